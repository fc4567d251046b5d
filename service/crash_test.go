package service

// crashChildEnv, when set, makes the test binary act as a crash-test child
// instead of running tests.
const crashChildEnv = "HSMKMS_CRASH_CHILD"

// crashChild runs the crash-test child; a helper replaces this file.
func crashChild() int { return 2 }
