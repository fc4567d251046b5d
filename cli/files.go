package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/hsmkms/hsmkms/cli/esdk"
	"github.com/urfave/cli/v2"
)

// File encryption: the AWS Encryption SDK message format (package esdk),
// streamed in constant memory, with one data key per file from the server.

func encryptFileCommand() *cli.Command {
	return leaf{name: "encrypt", usage: "encrypt a file in the AWS Encryption SDK format (streamed)", run: encryptFile,
		description: "Writes an AWS Encryption SDK message of format version 2, framed, with suite 0x0578 (key\n" +
			"commitment and an ECDSA P-384 signature, the SDKs' default) or, with --algorithm, 0x0478 (key\n" +
			"commitment, no signature).\n" +
			"Writes --out atomically: a temporary file (mode 0600) renamed into place, nothing partial left on failure.\n" +
			"The result decrypts with hsmkms decrypt and with any AWS Encryption SDK pointed at this server.\n" +
			"With --key given more than once, the data key is encrypted under each (the first makes it with\n" +
			"GenerateDataKey, the others with Encrypt), so the file decrypts through any one of them, as with the\n" +
			"SDKs' KMS keyrings.",
		flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "key", Aliases: []string{"key-id"}, EnvVars: envVars("key"),
				Usage: "the KMS key: ID, ARN, alias or alias ARN (required; repeatable, up to 8: the file opens with any of them)"},
			&cli.StringFlag{Name: "algorithm", Value: esdk.SuiteSigned.Name, EnvVars: envVars("algorithm"),
				Usage: "algorithm suite: " + esdk.SuiteSigned.Name + " (0x0578: key commitment and an ECDSA P-384 signature, the SDKs' default) " +
					"or " + esdk.SuiteUnsigned.Name + " (0x0478: key commitment, no signature, for readers that want none); " +
					"also the ID (0x0478) or the JavaScript SDK's ALG_ name. Suites without key commitment are refused"},
			&cli.StringFlag{Name: "in", EnvVars: envVars("in"), Usage: "file to encrypt, or - for standard input (required)"},
			&cli.StringFlag{Name: "out", EnvVars: envVars("out"), Usage: "file to write, or - for standard output (required)"},
			contextFlag("context", "encryption context pair KEY=VALUE (repeatable); decryption checks it is in the file"),
			&cli.IntFlag{Name: "frame-length", Value: esdk.DefaultFrameLength, EnvVars: envVars("frame-length"), Usage: "plaintext bytes per frame"},
			recursiveFlag(), suffixFlag(".encrypted", "added to each output file name"), quietFlag(), forceFlag(),
		}}.command()
}

func decryptFileCommand() *cli.Command {
	return leaf{name: "decrypt", usage: "decrypt a file made by hsmkms encrypt or an AWS Encryption SDK (streamed)", run: decryptFile,
		description: "Accepts every AWS Encryption SDK message of provider aws-kms: format versions 1 and 2, framed or not,\n" +
			"signed (0x0578, 0x0378, 0x0346, 0x0214) or not. Suites without key commitment (version 1) only with\n" +
			"--commitment-policy require-encrypt-allow-decrypt, to read or migrate old files.\n" +
			"Writes --out atomically: a temporary file (mode 0600) renamed into place only once every frame, the\n" +
			"signature of a signed message and the tag of non-framed content verified; on failure nothing partial\n" +
			"is left and an existing file is left as it was.\n" +
			"An existing --out file is replaced only with --force; a character device or FIFO (/dev/null, a pipe)\n" +
			"is written to like standard output and never replaced.\n" +
			"To standard output (--out -), a device or a FIFO, plaintext can only stream before the message's end is checked, so a\n" +
			"signed or non-framed message is refused there unless --allow-unverified-stream: its plaintext would\n" +
			"be out before the signature or tag that authenticates it. Framed unsigned messages stream frame by\n" +
			"frame, each verified before it is written.",
		flags: []cli.Flag{
			&cli.StringFlag{Name: "commitment-policy", Value: esdk.RequireEncryptRequireDecrypt.String(), EnvVars: envVars("commitment-policy"),
				Usage: "require-encrypt-require-decrypt (committing suites only) or require-encrypt-allow-decrypt (also the older suites)"},
			&cli.BoolFlag{Name: "allow-unverified-stream", EnvVars: envVars("allow-unverified-stream"),
				Usage: "with --out -, stream signed and non-framed messages, whose plaintext is out before their end is verified"},
			&cli.StringFlag{Name: "in", EnvVars: envVars("in"), Usage: "file to decrypt, or - for standard input (required)"},
			&cli.StringFlag{Name: "out", EnvVars: envVars("out"), Usage: "file to write, or - for standard output (required)"},
			contextFlag("context", "pair KEY=VALUE that the file's encryption context must hold (repeatable)"),
			recursiveFlag(), suffixFlag("", "added to each output file name (default: .encrypted removed, or else .decrypted added)"), quietFlag(), forceFlag(),
		}}.command()
}

func encryptFile(c *cli.Context, _ []string) error {
	keys := c.StringSlice("key")
	if len(keys) == 0 || slices.Contains(keys, "") {
		return usagef("encrypt needs --key (one or more)")
	}
	if len(keys) > esdk.MaxEncryptedDataKeys {
		return usagef("encrypt takes at most %d --key", esdk.MaxEncryptedDataKeys)
	}
	suite, err := esdk.ParseSuite(c.String("algorithm"))
	if err == nil && !suite.Committing() {
		err = fmt.Errorf("suite %s does not commit to its key", suite)
	}
	if err != nil {
		return usagef("--algorithm: give %s or %s (%v)", esdk.SuiteSigned.Name, esdk.SuiteUnsigned.Name, err)
	}
	if n := c.Int("frame-length"); n < 1 || n > esdk.MaxFrameLength {
		return usagef("--frame-length %d: give 1 to %d", n, esdk.MaxFrameLength)
	}
	encCtx, err := encryptionContext(c, "context")
	if err != nil {
		return err
	}
	for k := range encCtx {
		if strings.HasPrefix(k, esdk.ReservedContextPrefix) {
			return usagef("--context %s: keys starting %q belong to the AWS Encryption SDK", k, esdk.ReservedContextPrefix)
		}
	}
	client, err := kmsClient(c)
	if err != nil {
		return err
	}
	return runFiles(c, "encrypted", encryptedName(c.String("suffix")), func(r io.Reader, w io.Writer) error {
		_, err := esdk.Encrypt(c.Context, esdk.SDKKMS{Client: client}, keys[0], encCtx, r, w,
			esdk.WithFrameLength(c.Int("frame-length")), esdk.WithSuite(suite), esdk.WithAdditionalKeys(keys[1:]...))
		if err != nil {
			return keyErr(strings.Join(keys, ", "), err)
		}
		return nil
	})
}

func decryptFile(c *cli.Context, _ []string) error {
	want, err := encryptionContext(c, "context")
	if err != nil {
		return err
	}
	policy, err := esdk.ParseCommitmentPolicy(c.String("commitment-policy"))
	if err != nil {
		return usagef("--commitment-policy: %v", err)
	}
	streaming := streams(c.String("out")) && !c.Bool("allow-unverified-stream")
	client, err := kmsClient(c)
	if err != nil {
		return err
	}
	return runFiles(c, "decrypted", decryptedName(c.String("suffix"), c.IsSet("suffix")), func(r io.Reader, w io.Writer) error {
		_, err := esdk.Decrypt(c.Context, esdk.SDKKMS{Client: client}, r, w, esdk.WithCommitmentPolicy(policy),
			esdk.WithHeaderCheck(func(h esdk.Header) error {
				// Checked before any plaintext is out, standard output
				// included.
				for k, v := range want {
					if got, ok := h.EncryptionContext[k]; !ok || got != v {
						return fmt.Errorf("the encryption context lacks %s=%s", k, v)
					}
				}
				switch {
				case streaming && h.Suite.Signed():
					return fmt.Errorf("the message is signed (%s): its plaintext would reach standard output before the signature is verified; write it to a file with --out FILE, or give --allow-unverified-stream", h.Suite)
				case streaming && h.FrameLength == 0:
					return errors.New("the message is not framed: its plaintext would reach standard output before its tag is verified; write it to a file with --out FILE, or give --allow-unverified-stream")
				}
				return nil
			}))
		if err != nil && c.Bool("recursive") {
			return err // the tree's report names the file
		}
		if err != nil {
			return fmt.Errorf("decrypting %s: %w", c.String("in"), err)
		}
		return nil
	})
}

// transform runs fn from --in to --out. A file output is written to a
// temporary file in its directory and renamed into place only when fn
// succeeds; on a terminal, progress is shown on standard error.
func transform(c *cli.Context, fn func(io.Reader, io.Writer) error) error {
	inPath, outPath := c.String("in"), c.String("out")
	if inPath == "" || outPath == "" {
		return usagef("%s needs --in and --out (- for standard input or output)", c.Command.Name)
	}
	in, size, err := openInput(c, inPath)
	if err != nil {
		return err
	}
	defer in.Close()
	bar := newFileProgress(c, filepath.Base(inPath), size)
	r := bar.reader(in)
	switch mode, cerr := checkOutput(outPath, c.Bool("force")); {
	case outPath == "-":
		err = fn(r, c.App.Writer)
	case cerr != nil:
		err = cerr
	case mode == outDirect:
		err = writeDirect(outPath, func(f *os.File) error { return fn(r, f) })
	default:
		temps, stop := watchInterrupts(c)
		defer stop()
		err = writeAtomically(temps, outPath, c.Bool("force"), func(w io.Writer) error { return fn(r, w) })
	}
	bar.end(err == nil)
	return err
}

func openInput(c *cli.Context, path string) (io.ReadCloser, int64, error) {
	if path == "-" {
		return io.NopCloser(c.App.Reader), -1, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// writeAtomically makes path hold what write writes, or leaves it as it
// was: the bytes go to a temporary file beside it (mode 0600), synced and
// put in place only on success. temps removes it on an interrupt. Without
// replace, a path that appeared meanwhile is not replaced (publish).
func writeAtomically(temps *tempFiles, path string, replace bool, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".hsmkms-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, unwrapPath(err))
	}
	temps.add(tmp.Name())
	defer func() {
		if err != nil {
			tmp.Close()
			temps.finish(tmp.Name(), func() error { return os.Remove(tmp.Name()) })
		}
	}()
	if err := write(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return temps.finish(tmp.Name(), func() error { return publish(tmp.Name(), path, replace) })
}

// publish puts the finished file tmp in place as path. Without replace it
// links it there, which fails if path exists: checkOutput found no file
// there when the command began, but one may have appeared while it ran
// (found by review: a slow decrypt replaced a file another process had
// made meanwhile, without --force). A file system without hard links has
// it renamed.
func publish(tmp, path string, replace bool) error {
	if replace {
		return os.Rename(tmp, path)
	}
	err := os.Link(tmp, path)
	switch {
	case errors.Is(err, fs.ErrExist):
		os.Remove(tmp)
		return usagef("--out %s appeared while hsmkms wrote it; nothing was replaced: give --force to replace it", path)
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.ENOTSUP), errors.Is(err, syscall.EXDEV):
		return os.Rename(tmp, path)
	case err != nil:
		return err
	}
	return os.Remove(tmp)
}

// unwrapPath drops the temporary file's name from a *PathError: the user
// named the target, not it.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}
