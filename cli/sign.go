package cli

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/urfave/cli/v2"
)

// maxSignMessage is what KMS signs as a message (RAW); a longer input is
// hashed here and signed as a digest.
const (
	maxSignMessage = 4096
	maxSignInput   = 64 << 20
)

func signFlags(inUsage string) []cli.Flag {
	return []cli.Flag{
		keyFlag("the asymmetric KMS key (required)"),
		&cli.StringFlag{Name: "algorithm", EnvVars: envVars("algorithm"),
			Usage: "signing algorithm: ECDSA_SHA_256, ECDSA_SHA_384, ECDSA_SHA_512, RSASSA_PSS_SHA_256 or RSASSA_PKCS1_V1_5_SHA_256 (required)"},
		inFlag(inUsage),
		&cli.BoolFlag{Name: "digest", EnvVars: envVars("digest"), Usage: "--in is the digest already, not the message"},
	}
}

func signCommand() *cli.Command {
	return leaf{name: "sign", usage: "sign a file or message with an asymmetric key on the token", run: sign,
		description: "Writes the signature to standard output as base64 (as aws kms sign does), or raw with --out FILE.\n" +
			"A message over 4096 bytes is hashed here with the algorithm's hash and signed as a digest: hsmkms\n" +
			"verify checks it the same way, and openssl dgst with the key's public key (aws kms get-public-key).",
		flags: append(signFlags("file to sign, or - for standard input (required)"),
			&cli.StringFlag{Name: "out", EnvVars: envVars("out"), Usage: "file for the raw signature (it must not exist)"}),
	}.command()
}

func verifyCommand() *cli.Command {
	return leaf{name: "verify", usage: "verify a signature with an asymmetric key on the token", run: verify,
		description: "Exits 0 when the signature is valid, 1 (KMSInvalidSignatureException) when it is not.",
		flags: append(signFlags("file that was signed, or - for standard input (required)"),
			&cli.StringFlag{Name: "signature", EnvVars: envVars("signature"), Usage: "file holding the signature, raw or base64 (required)"}),
	}.command()
}

// signingInput reads --in and returns what KMS signs: the message, or a
// digest (computed here for a long message) with its type.
func signingInput(c *cli.Context) ([]byte, types.MessageType, types.SigningAlgorithmSpec, error) {
	alg := types.SigningAlgorithmSpec(c.String("algorithm"))
	if alg == "" {
		return nil, "", "", usagef("%s needs --algorithm", commandName(c))
	}
	data, err := readInput(c, maxSignInput)
	if err != nil {
		return nil, "", "", err
	}
	if c.Bool("digest") {
		return data, types.MessageTypeDigest, alg, nil
	}
	if len(data) <= maxSignMessage {
		return data, types.MessageTypeRaw, alg, nil
	}
	switch {
	case strings.HasSuffix(string(alg), "_256"):
		d := sha256.Sum256(data)
		return d[:], types.MessageTypeDigest, alg, nil
	case strings.HasSuffix(string(alg), "_384"):
		d := sha512.Sum384(data)
		return d[:], types.MessageTypeDigest, alg, nil
	case strings.HasSuffix(string(alg), "_512"):
		d := sha512.Sum512(data)
		return d[:], types.MessageTypeDigest, alg, nil
	}
	return nil, "", "", usagef("unknown --algorithm %s", alg)
}

func sign(c *cli.Context, _ []string) error {
	key, err := requireKey(c)
	if err != nil {
		return err
	}
	msg, typ, alg, err := signingInput(c)
	if err != nil {
		return err
	}
	out := c.String("out")
	if out != "" {
		if _, err := os.Lstat(out); err == nil {
			return usagef("--out %s exists", out)
		}
	}
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	res, err := cl.Sign(c.Context, &kms.SignInput{KeyId: aws.String(key), Message: msg, MessageType: typ, SigningAlgorithm: alg})
	if err != nil {
		return keyErr(key, err)
	}
	if out != "" {
		// A new file only: O_EXCL fails on anything there now, a file
		// or a link, where WriteFile truncated or followed what had
		// appeared since the check above (found by review).
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return usagef("--out %s: %v", out, unwrapPath(err))
		}
		_, err = f.Write(res.Signature)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	return printOut(c, struct {
		KeyId            string `json:"KeyId"`
		Signature        []byte `json:"Signature"`
		SigningAlgorithm string `json:"SigningAlgorithm"`
	}{aws.ToString(res.KeyId), res.Signature, string(res.SigningAlgorithm)}, func(w io.Writer) {
		fmt.Fprintln(w, base64.StdEncoding.EncodeToString(res.Signature))
	})
}

func verify(c *cli.Context, _ []string) error {
	key, err := requireKey(c)
	if err != nil {
		return err
	}
	sigFile := c.String("signature")
	if sigFile == "" {
		return usagef("verify needs --signature FILE")
	}
	sig, err := os.ReadFile(sigFile)
	if err != nil {
		return usagef("--signature: %v", err)
	}
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sig))); err == nil && len(b) > 0 {
		sig = b
	}
	msg, typ, alg, err := signingInput(c)
	if err != nil {
		return err
	}
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	res, err := cl.Verify(c.Context, &kms.VerifyInput{KeyId: aws.String(key), Message: msg, MessageType: typ, Signature: sig, SigningAlgorithm: alg})
	if err != nil {
		return keyErr(key, err)
	}
	return printOut(c, struct {
		KeyId          string `json:"KeyId"`
		SignatureValid bool   `json:"SignatureValid"`
	}{aws.ToString(res.KeyId), res.SignatureValid}, func(w io.Writer) {
		fmt.Fprintln(w, "signature valid")
	})
}
