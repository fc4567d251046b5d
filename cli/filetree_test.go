package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTreeNames(t *testing.T) {
	for _, tc := range []struct {
		names    treeNames
		rel, out string
	}{
		{encryptedName(".encrypted"), "a/b.txt", "a/b.txt.encrypted"},
		{encryptedName(".enc"), "b", "b.enc"},
		{decryptedName("", false), "a/b.txt.encrypted", "a/b.txt"},
		{decryptedName("", false), "a/b.txt", "a/b.txt.decrypted"},
		{decryptedName("", false), "a/.encrypted", "a/.encrypted.decrypted"},
		{decryptedName(".plain", true), "a/b.txt.encrypted", "a/b.txt.encrypted.plain"},
	} {
		if got := tc.names(tc.rel); got != tc.out {
			t.Errorf("%q -> %q, want %q", tc.rel, got, tc.out)
		}
	}
}

func TestCheckTree(t *testing.T) {
	root := t.TempDir()
	in := filepath.Join(root, "in")
	mkdir(t, filepath.Join(in, "sub"))
	mkdir(t, filepath.Join(root, "elsewhere"))
	for link, target := range map[string]string{
		"link-in":   filepath.Join(in, "sub"),
		"link-root": root,
		"link-out":  filepath.Join(root, "elsewhere"),
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, in, out string
		ok            bool
	}{
		{"beside", in, filepath.Join(root, "out"), true},
		{"same", in, in, false},
		{"inside", in, filepath.Join(in, "sub"), false},
		{"inside, relative", in, in + "/./x/..", false},
		{"name prefix only", in, in + "2", true},
		{"dot-dot name inside", in, filepath.Join(in, "..enc"), false},
		{"dot-dot name inside, deeper", in, filepath.Join(in, "..enc", "x"), false},
		{"dot-dot parent, outside", in, in + "/../x", true},
		{"symlink to inside", in, filepath.Join(root, "link-in"), false},
		{"symlink to inside, new dir under it", in, filepath.Join(root, "link-in", "new", "x"), false},
		{"under symlinked parent", in, filepath.Join(root, "link-root", "in", "new"), false},
		{"symlink to outside", in, filepath.Join(root, "link-out"), true},
		{"input through a symlink, output inside", filepath.Join(root, "link-root", "in"), filepath.Join(in, "sub"), false},
		{"input through a symlink, output beside", filepath.Join(root, "link-root", "in"), filepath.Join(root, "out"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mkdir(t, tc.in)
			err := checkTree(tc.in, tc.out)
			if (err == nil) != tc.ok {
				t.Fatalf("checkTree(%s, %s) = %v, want ok=%v", tc.in, tc.out, err, tc.ok)
			}
			if err != nil {
				if _, code := exitOf(err); code != ExitUsage {
					t.Fatalf("checkTree(%s, %s) = %v, want a usage error", tc.in, tc.out, err)
				}
			}
		})
	}
	if err := checkTree(filepath.Join(root, "missing"), filepath.Join(root, "o")); err == nil {
		t.Fatal("checkTree accepted a missing input")
	}
}

// TestProgressBar: the bar counts what is read through it and shows bytes,
// a percentage and the rate; a failure leaves it where it stopped.
func TestProgressBar(t *testing.T) {
	var out bytes.Buffer
	p := drawProgress(&out, "big.bin", 8<<20)
	n, err := io.Copy(io.Discard, p.reader(bytes.NewReader(make([]byte, 8<<20))))
	if err != nil || n != 8<<20 {
		t.Fatal(n, err)
	}
	p.end(true)
	for _, want := range []string{"big.bin", "100%", "8.0 MiB"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the finished bar %q lacks %q", out.String(), want)
		}
	}
	out.Reset()
	p = drawProgress(&out, "cut.bin", 8<<20)
	io.Copy(io.Discard, p.reader(bytes.NewReader(make([]byte, 2<<20))))
	p.end(false)
	if strings.Contains(out.String(), "100%") {
		t.Errorf("a failed transfer's bar shows 100%%: %q", out.String())
	}
	// No bar: its methods pass the input through.
	var none *fileProgress
	if r := none.reader(strings.NewReader("x")); r == nil {
		t.Fatal("nil bar lost the reader")
	}
	none.end(true)
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}
