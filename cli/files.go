package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hsmkms/hsmkms/cli/esdk"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// File encryption: the AWS Encryption SDK message format (package esdk),
// streamed in constant memory, with one data key per file from the server.

func encryptFileCommand() *cli.Command {
	return leaf{name: "encrypt", usage: "encrypt a file in the AWS Encryption SDK format (streamed)", run: encryptFile,
		description: "Writes --out atomically: a temporary file renamed into place, nothing partial left on failure.\n" +
			"The result decrypts with hsmkms decrypt and with any AWS Encryption SDK pointed at this server.",
		flags: []cli.Flag{
			keyFlag("the KMS key: ID, ARN, alias or alias ARN (required)"),
			&cli.StringFlag{Name: "in", EnvVars: envVars("in"), Usage: "file to encrypt, or - for standard input (required)"},
			&cli.StringFlag{Name: "out", EnvVars: envVars("out"), Usage: "file to write, or - for standard output (required)"},
			contextFlag("context", "encryption context pair KEY=VALUE (repeatable); decryption checks it is in the file"),
			&cli.IntFlag{Name: "frame-length", Value: esdk.DefaultFrameLength, EnvVars: envVars("frame-length"), Usage: "plaintext bytes per frame"},
		}}.command()
}

func decryptFileCommand() *cli.Command {
	return leaf{name: "decrypt", usage: "decrypt a file made by hsmkms encrypt or an AWS Encryption SDK (streamed)", run: decryptFile,
		description: "Writes --out atomically; plaintext of a frame is written only after its tag verified.",
		flags: []cli.Flag{
			&cli.StringFlag{Name: "in", EnvVars: envVars("in"), Usage: "file to decrypt, or - for standard input (required)"},
			&cli.StringFlag{Name: "out", EnvVars: envVars("out"), Usage: "file to write, or - for standard output (required)"},
			contextFlag("context", "pair KEY=VALUE that the file's encryption context must hold (repeatable)"),
		}}.command()
}

func encryptFile(c *cli.Context, _ []string) error {
	key := c.String("key")
	if key == "" {
		return usagef("encrypt needs --key")
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
		_, err := esdk.Encrypt(c.Context, esdk.SDKKMS{Client: client}, key, encCtx, r, w,
			esdk.WithFrameLength(c.Int("frame-length")))
		if err != nil {
			return keyErr(key, err)
		}
		return nil
	})
}

func decryptFile(c *cli.Context, _ []string) error {
	want, err := encryptionContext(c, "context")
	if err != nil {
		return err
	}
	client, err := kmsClient(c)
	if err != nil {
		return err
	}
	return transform(c, func(r io.Reader, w io.Writer) error {
		h, err := esdk.Decrypt(c.Context, esdk.SDKKMS{Client: client}, r, w)
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
