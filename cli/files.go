package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hsmkms/hsmkms/cli/esdk"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// File encryption: the AWS Encryption SDK message format (package esdk),
// streamed in constant memory, with one data key per file from the server.

func encryptFileCommand() *cli.Command {
	return leaf{name: "encrypt", usage: "encrypt a file in the AWS Encryption SDK format (streamed)", run: encryptFile,
		description: "Writes --out atomically: a temporary file renamed into place, nothing partial left on failure.\n" +
			"The result decrypts with hsmkms decrypt and with any AWS Encryption SDK pointed at this server.\n" +
			"With --key given more than once, the data key is encrypted under each (the first makes it), so the\n" +
			"file decrypts through any one of them, as with the SDKs' KMS keyrings.",
		flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "key", EnvVars: envVars("key"),
				Usage: "the KMS key: ID, ARN, alias or alias ARN (required; repeatable: the file opens with any of them)"},
			&cli.StringFlag{Name: "algorithm", Value: esdk.SuiteSigned.Name, EnvVars: envVars("algorithm"),
				Usage: "algorithm suite: " + esdk.SuiteSigned.Name + " (0x0578: key commitment and an ECDSA P-384 signature, the SDKs' default) " +
					"or " + esdk.SuiteUnsigned.Name + " (0x0478: key commitment, no signature, for readers that want none)"},
			&cli.StringFlag{Name: "in", EnvVars: envVars("in"), Usage: "file to encrypt, or - for standard input (required)"},
			&cli.StringFlag{Name: "out", EnvVars: envVars("out"), Usage: "file to write, or - for standard output (required)"},
			contextFlag("context", "encryption context pair KEY=VALUE (repeatable); decryption checks it is in the file"),
			&cli.IntFlag{Name: "frame-length", Value: esdk.DefaultFrameLength, EnvVars: envVars("frame-length"), Usage: "plaintext bytes per frame"},
		}}.command()
}

func decryptFileCommand() *cli.Command {
	return leaf{name: "decrypt", usage: "decrypt a file made by hsmkms encrypt or an AWS Encryption SDK (streamed)", run: decryptFile,
		description: "Accepts every AWS Encryption SDK message of provider aws-kms: format versions 1 and 2, framed or not,\n" +
			"signed (0x0578, 0x0378, 0x0346, 0x0214) or not. Suites without key commitment (version 1) only with\n" +
			"--commitment-policy require-encrypt-allow-decrypt, to read or migrate old files.\n" +
			"Writes --out atomically: a temporary file renamed into place only once every frame, the signature of a\n" +
			"signed message and the tag of non-framed content verified; nothing partial is left on failure.\n" +
			"To standard output (--out -), plaintext can only stream before the message's end is checked, so a\n" +
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
	encCtx, err := encryptionContext(c, "context")
	if err != nil {
		return err
	}
	client, err := kmsClient(c)
	if err != nil {
		return err
	}
	return transform(c, func(r io.Reader, w io.Writer) error {
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
	streaming := c.String("out") == "-" && !c.Bool("allow-unverified-stream")
	client, err := kmsClient(c)
	if err != nil {
		return err
	}
	return transform(c, func(r io.Reader, w io.Writer) error {
		h, err := esdk.Decrypt(c.Context, esdk.SDKKMS{Client: client}, r, w, esdk.WithCommitmentPolicy(policy),
			esdk.WithHeaderCheck(func(h esdk.Header) error {
				switch {
				case streaming && h.Suite.Signed():
					return fmt.Errorf("the message is signed (%s): its plaintext would reach standard output before the signature is verified; write it to a file with --out FILE, or give --allow-unverified-stream", h.Suite)
				case streaming && h.FrameLength == 0:
					return errors.New("the message is not framed: its plaintext would reach standard output before its tag is verified; write it to a file with --out FILE, or give --allow-unverified-stream")
				}
				return nil
			}))
		if err != nil {
			return fmt.Errorf("decrypting %s: %w", c.String("in"), err)
		}
		for k, v := range want {
			if got, ok := h.EncryptionContext[k]; !ok || got != v {
				return fmt.Errorf("decrypting %s: the encryption context lacks %s=%s", c.String("in"), k, v)
			}
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
	r := io.Reader(in)
	if f, ok := c.App.ErrWriter.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p := &progress{w: f, total: size}
		defer p.done()
		r = io.TeeReader(in, p)
	}
	if outPath == "-" {
		return fn(r, c.App.Writer)
	}
	return writeAtomically(outPath, func(w io.Writer) error { return fn(r, w) })
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
// renamed into place only on success.
func writeAtomically(path string, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".hsmkms-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
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
	return os.Rename(tmp.Name(), path)
}

// progress prints how much of the input was read, at most every MiB.
type progress struct {
	w           io.Writer
	total, read int64
	shown       int64
}

func (p *progress) Write(b []byte) (int, error) {
	p.read += int64(len(b))
	if p.read-p.shown >= 1<<20 {
		p.shown = p.read
		p.print()
	}
	return len(b), nil
}

func (p *progress) print() {
	if p.total > 0 {
		fmt.Fprintf(p.w, "\r%s / %s (%d%%)", size(p.read), size(p.total), p.read*100/p.total)
		return
	}
	fmt.Fprintf(p.w, "\r%s", size(p.read))
}

func (p *progress) done() {
	if p.shown > 0 {
		p.print()
		fmt.Fprintln(p.w)
	}
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
