package cli

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/urfave/cli/v2"
)

// Small values go to KMS itself: Encrypt takes at most 4096 bytes. Files
// are for hsmkms encrypt and decrypt, which use data keys.
const (
	maxPlaintext = 4096
	// maxCiphertextInput bounds what decrypt-value and re-encrypt read: a
	// KMS ciphertext is at most 6144 bytes, base64 a third more.
	maxCiphertextInput = 64 << 10
)

func keyFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "key", Aliases: []string{"key-id"}, EnvVars: envVars("key"), Usage: usage}
}

func contextFlag(name, usage string) cli.Flag {
	return &cli.StringSliceFlag{Name: name, EnvVars: envVars(name), Usage: usage}
}

func inFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "in", EnvVars: envVars("in"), Usage: usage}
}

func datakeyCommand() *cli.Command {
	return leaf{name: "datakey", usage: "generate a data key: its plaintext and its ciphertext under a KMS key, base64", run: datakey,
		description: "--key is a key ID, a key ARN, an alias name (alias/…) or an alias ARN.",
		flags: []cli.Flag{
			keyFlag("KMS key to encrypt the data key under (required)"),
			&cli.StringFlag{Name: "spec", EnvVars: envVars("spec"), Usage: "AES_256 (default) or AES_128"},
			&cli.IntFlag{Name: "bytes", EnvVars: envVars("bytes"), Usage: "length of the data key in bytes, 1 to 1024, instead of --spec"},
			contextFlag("context", "KEY=VALUE of the encryption context (repeatable)"),
			&cli.BoolFlag{Name: "no-plaintext", EnvVars: envVars("no-plaintext"), Usage: "return only the ciphertext (GenerateDataKeyWithoutPlaintext)"},
		}}.command()
}

func datakeyPairCommand() *cli.Command {
	return leaf{name: "datakey-pair", usage: "generate a data key pair: its public key, its private key and the private key's ciphertext under a KMS key, base64 DER", run: datakeyPair,
		description: "--key is a key ID, a key ARN, an alias name (alias/…) or an alias ARN.\n" +
			"The public key is a SubjectPublicKeyInfo, the private key PKCS#8; decrypt-value of the ciphertext gives the private key back.",
		flags: []cli.Flag{
			keyFlag("KMS key to encrypt the private key under (required)"),
			&cli.StringFlag{Name: "spec", EnvVars: envVars("spec"), Usage: "RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256 (default), ECC_NIST_P384, ECC_NIST_P521 or ECC_SECG_P256K1"},
			contextFlag("context", "KEY=VALUE of the encryption context (repeatable)"),
			&cli.BoolFlag{Name: "no-plaintext", EnvVars: envVars("no-plaintext"), Usage: "return no private key, only its ciphertext (GenerateDataKeyPairWithoutPlaintext)"},
		}}.command()
}

func encryptValueCommand() *cli.Command {
	return leaf{name: "encrypt-value", usage: fmt.Sprintf("encrypt a small value (at most %d bytes) with a KMS key", maxPlaintext), run: encryptValue,
		description: "Writes the ciphertext to standard output as raw bytes, or base64 with --base64.\n" +
			"For files, use hsmkms encrypt.",
		flags: []cli.Flag{
			keyFlag("KMS key to encrypt under (required)"),
			contextFlag("context", "KEY=VALUE of the encryption context (repeatable)"),
			inFlag("file holding the value, or - for standard input"),
			&cli.StringFlag{Name: "value", EnvVars: envVars("value"), Usage: "the value itself (visible in the process list: prefer --in)"},
			&cli.BoolFlag{Name: "base64", EnvVars: envVars("base64"), Usage: "write the ciphertext as base64"},
		}}.command()
}

func decryptValueCommand() *cli.Command {
	return leaf{name: "decrypt-value", usage: "decrypt a value that encrypt-value or datakey made", run: decryptValue,
		description: "Writes the plaintext to standard output.",
		flags: []cli.Flag{
			inFlag("file holding the ciphertext, or - for standard input (required)"),
			contextFlag("context", "KEY=VALUE of the encryption context (repeatable)"),
			&cli.BoolFlag{Name: "base64", EnvVars: envVars("base64"), Usage: "the ciphertext is base64"},
			keyFlag("refuse ciphertexts of other keys than this one"),
		}}.command()
}

func reEncryptCommand() *cli.Command {
	return leaf{name: "re-encrypt", usage: "re-encrypt a ciphertext under another key without showing the plaintext", run: reEncrypt,
		description: "Writes the new ciphertext to standard output as raw bytes, or base64 with --base64.",
		flags: []cli.Flag{
			keyFlag("KMS key to re-encrypt under (required)"),
			inFlag("file holding the ciphertext, or - for standard input (required)"),
			contextFlag("source-context", "KEY=VALUE of the ciphertext's encryption context (repeatable)"),
			contextFlag("context", "KEY=VALUE of the new encryption context (repeatable)"),
			&cli.BoolFlag{Name: "base64", EnvVars: envVars("base64"), Usage: "read and write the ciphertexts as base64"},
		}}.command()
}

// encryptionContext returns the k=v of the flag called name, nil for none.
func encryptionContext(c *cli.Context, name string) (map[string]string, error) {
	pairs, err := parsePairs(name, c.StringSlice(name))
	if err != nil || len(pairs) == 0 {
		return nil, err
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		m[p.k] = p.v
	}
	return m, nil
}

// requireKey returns --key or a usage error.
func requireKey(c *cli.Context) (string, error) {
	if k := c.String("key"); k != "" {
		return k, nil
	}
	return "", usagef("%s needs --key", commandName(c))
}

// readInput reads the file of --in, or standard input for -, refusing more
// than limit bytes.
func readInput(c *cli.Context, limit int) ([]byte, error) {
	name := c.String("in")
	if name == "" {
		return nil, usagef("%s needs --in FILE (or - for standard input)", commandName(c))
	}
	r := c.App.Reader
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, usagef("--in: %v", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", inName(c), err)
	}
	if len(data) > limit {
		return nil, usagef("%s is larger than %d bytes", inName(c), limit)
	}
	return data, nil
}

// inName names the input in messages.
func inName(c *cli.Context) string {
	if c.String("in") == "-" {
		return "standard input"
	}
	return c.String("in")
}

// readCiphertext reads a ciphertext from --in, decoding base64 with
// --base64.
func readCiphertext(c *cli.Context) ([]byte, error) {
	data, err := readInput(c, maxCiphertextInput)
	if err != nil || !c.Bool("base64") {
		return data, err
	}
	blob, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(data)))
	if err != nil {
		return nil, usagef("%s is not base64: %v", inName(c), err)
	}
	return blob, nil
}

// writeData writes data, raw or as base64 and a newline, to standard
// output (table and text alike), or v as JSON with --output json.
func writeData(c *cli.Context, v any, data []byte, asBase64 bool) error {
	switch outputFormat(c) {
	case "table", "text", "":
		if asBase64 {
			data = []byte(base64.StdEncoding.EncodeToString(data) + "\n")
		}
		_, err := c.App.Writer.Write(data)
		return err
	}
	return printOut(c, v, nil)
}

// datakeyView is what datakey prints; []byte members are base64 in JSON.
type datakeyView struct {
	KeyId          string `json:"KeyId"`
	Plaintext      []byte `json:"Plaintext,omitempty"`
	CiphertextBlob []byte `json:"CiphertextBlob"`
}

func datakey(c *cli.Context, _ []string) error {
	key, err := requireKey(c)
	if err != nil {
		return err
	}
	ec, err := encryptionContext(c, "context")
	if err != nil {
		return err
	}
	var spec types.DataKeySpec
	var n *int32
	switch {
	case c.IsSet("spec") && c.IsSet("bytes"):
		return usagef("give --spec or --bytes, not both")
	case c.IsSet("bytes"):
		if b := c.Int("bytes"); b < 1 || b > 1024 {
			return usagef("--bytes must be 1 to 1024, not %d", b)
		}
		n = aws.Int32(int32(c.Int("bytes")))
	case c.String("spec") == "" || c.String("spec") == string(types.DataKeySpecAes256):
		spec = types.DataKeySpecAes256
	case c.String("spec") == string(types.DataKeySpecAes128):
		spec = types.DataKeySpecAes128
	default:
		return usagef("--spec must be AES_256 or AES_128, not %q", c.String("spec"))
	}
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	var v datakeyView
	if c.Bool("no-plaintext") {
		out, err := cl.GenerateDataKeyWithoutPlaintext(c.Context, &kms.GenerateDataKeyWithoutPlaintextInput{
			KeyId: aws.String(key), KeySpec: spec, NumberOfBytes: n, EncryptionContext: ec})
		if err != nil {
			return keyErr(key, err)
		}
		v = datakeyView{KeyId: aws.ToString(out.KeyId), CiphertextBlob: out.CiphertextBlob}
	} else {
		out, err := cl.GenerateDataKey(c.Context, &kms.GenerateDataKeyInput{
			KeyId: aws.String(key), KeySpec: spec, NumberOfBytes: n, EncryptionContext: ec})
		if err != nil {
			return keyErr(key, err)
		}
		v = datakeyView{KeyId: aws.ToString(out.KeyId), Plaintext: out.Plaintext, CiphertextBlob: out.CiphertextBlob}
	}
	return printOut(c, v, func(w io.Writer) {
		row(w, "key", v.KeyId)
		if v.Plaintext != nil {
			row(w, "plaintext", base64.StdEncoding.EncodeToString(v.Plaintext))
		}
		row(w, "ciphertext", base64.StdEncoding.EncodeToString(v.CiphertextBlob))
	})
}

// datakeyPairView is what datakey-pair prints with --output json: the
// fields of AWS KMS's GenerateDataKeyPair response.
type datakeyPairView struct {
	KeyId                    string `json:"KeyId"`
	KeyPairSpec              string `json:"KeyPairSpec"`
	PublicKey                []byte `json:"PublicKey"`
	PrivateKeyPlaintext      []byte `json:"PrivateKeyPlaintext,omitempty"`
	PrivateKeyCiphertextBlob []byte `json:"PrivateKeyCiphertextBlob"`
}

func datakeyPair(c *cli.Context, _ []string) error {
	key, err := requireKey(c)
	if err != nil {
		return err
	}
	ec, err := encryptionContext(c, "context")
	if err != nil {
		return err
	}
	spec := types.DataKeyPairSpec(c.String("spec"))
	if spec == "" {
		spec = types.DataKeyPairSpecEccNistP256
	}
	// The server names the specs it makes; an unknown one is its
	// ValidationException, listing AWS's values.
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	var v datakeyPairView
	if c.Bool("no-plaintext") {
		out, err := cl.GenerateDataKeyPairWithoutPlaintext(c.Context, &kms.GenerateDataKeyPairWithoutPlaintextInput{
			KeyId: aws.String(key), KeyPairSpec: spec, EncryptionContext: ec})
		if err != nil {
			return keyErr(key, err)
		}
		v = datakeyPairView{KeyId: aws.ToString(out.KeyId), KeyPairSpec: string(out.KeyPairSpec), PublicKey: out.PublicKey,
			PrivateKeyCiphertextBlob: out.PrivateKeyCiphertextBlob}
	} else {
		out, err := cl.GenerateDataKeyPair(c.Context, &kms.GenerateDataKeyPairInput{
			KeyId: aws.String(key), KeyPairSpec: spec, EncryptionContext: ec})
		if err != nil {
			return keyErr(key, err)
		}
		v = datakeyPairView{KeyId: aws.ToString(out.KeyId), KeyPairSpec: string(out.KeyPairSpec), PublicKey: out.PublicKey,
			PrivateKeyPlaintext: out.PrivateKeyPlaintext, PrivateKeyCiphertextBlob: out.PrivateKeyCiphertextBlob}
	}
	return printOut(c, v, func(w io.Writer) {
		row(w, "key", v.KeyId)
		row(w, "spec", v.KeyPairSpec)
		row(w, "public_key", base64.StdEncoding.EncodeToString(v.PublicKey))
		if v.PrivateKeyPlaintext != nil {
			row(w, "private_key", base64.StdEncoding.EncodeToString(v.PrivateKeyPlaintext))
		}
		row(w, "ciphertext", base64.StdEncoding.EncodeToString(v.PrivateKeyCiphertextBlob))
	})
}

// cipherView is what encrypt-value and re-encrypt print with --output json.
type cipherView struct {
	KeyId               string `json:"KeyId"`
	SourceKeyId         string `json:"SourceKeyId,omitempty"`
	CiphertextBlob      []byte `json:"CiphertextBlob"`
	EncryptionAlgorithm string `json:"EncryptionAlgorithm,omitempty"`
}

func encryptValue(c *cli.Context, _ []string) error {
	key, err := requireKey(c)
	if err != nil {
		return err
	}
	ec, err := encryptionContext(c, "context")
	if err != nil {
		return err
	}
	var plain []byte
	switch {
	case c.IsSet("in") == c.IsSet("value"):
		return usagef("give the value with --in FILE, --in - or --value, one of them")
	case c.IsSet("value"):
		plain = []byte(c.String("value"))
	default:
		if plain, err = readInput(c, maxPlaintext); err != nil {
			return err
		}
	}
	switch {
	case len(plain) == 0:
		return usagef("the value is empty")
	case len(plain) > maxPlaintext:
		return usagef("the value is %d bytes; encrypt-value takes at most %d (use hsmkms encrypt for files)", len(plain), maxPlaintext)
	}
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	out, err := cl.Encrypt(c.Context, &kms.EncryptInput{KeyId: aws.String(key), Plaintext: plain, EncryptionContext: ec})
	if err != nil {
		return keyErr(key, err)
	}
	v := cipherView{KeyId: aws.ToString(out.KeyId), CiphertextBlob: out.CiphertextBlob, EncryptionAlgorithm: string(out.EncryptionAlgorithm)}
	return writeData(c, v, out.CiphertextBlob, c.Bool("base64"))
}

// plainView is what decrypt-value prints with --output json.
type plainView struct {
	KeyId               string `json:"KeyId"`
	Plaintext           []byte `json:"Plaintext"`
	EncryptionAlgorithm string `json:"EncryptionAlgorithm,omitempty"`
}

func decryptValue(c *cli.Context, _ []string) error {
	ec, err := encryptionContext(c, "context")
	if err != nil {
		return err
	}
	blob, err := readCiphertext(c)
	if err != nil {
		return err
	}
	in := &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec}
	if k := c.String("key"); k != "" {
		in.KeyId = aws.String(k)
	}
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	out, err := cl.Decrypt(c.Context, in)
	if err != nil {
		return &callError{"ciphertext " + inName(c), err}
	}
	v := plainView{KeyId: aws.ToString(out.KeyId), Plaintext: out.Plaintext, EncryptionAlgorithm: string(out.EncryptionAlgorithm)}
	return writeData(c, v, out.Plaintext, false)
}

func reEncrypt(c *cli.Context, _ []string) error {
	key, err := requireKey(c)
	if err != nil {
		return err
	}
	src, err := encryptionContext(c, "source-context")
	if err != nil {
		return err
	}
	dst, err := encryptionContext(c, "context")
	if err != nil {
		return err
	}
	blob, err := readCiphertext(c)
	if err != nil {
		return err
	}
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	out, err := cl.ReEncrypt(c.Context, &kms.ReEncryptInput{CiphertextBlob: blob, DestinationKeyId: aws.String(key),
		SourceEncryptionContext: src, DestinationEncryptionContext: dst})
	if err != nil {
		return &callError{"re-encrypt " + inName(c) + " under key " + key, err}
	}
	v := cipherView{KeyId: aws.ToString(out.KeyId), SourceKeyId: aws.ToString(out.SourceKeyId), CiphertextBlob: out.CiphertextBlob,
		EncryptionAlgorithm: string(out.DestinationEncryptionAlgorithm)}
	return writeData(c, v, out.CiphertextBlob, c.Bool("base64"))
}
