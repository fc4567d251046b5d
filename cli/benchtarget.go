package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/auth"
	"github.com/urfave/cli/v2"
)

// benchTargetCommand serves the two reference points `make bench` measures
// hsmkms against, with the same load generator:
//   - null: verifies SigV4 like hsmkms and answers canned responses without
//     touching the token (the cost of HTTP, JSON and signatures);
//   - token: performs only the token operation (seal a fresh 32-byte data
//     key for GenerateDataKey, unseal one for Decrypt) with no HTTP auth
//     (the cost of the token);
//   - xks-null: null for the XKS proxy API: verifies SigV4 for
//     kms-xks-proxy as the XKS listener does and answers Encrypt and
//     Decrypt with canned responses.
func benchTargetCommand() *cli.Command {
	return &cli.Command{
		Name:   "bench-target",
		Usage:  "serve a reference endpoint for benchmarks (null or token)",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mode", Value: "null", Usage: "null, token or xks-null"},
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:0"},
			&cli.StringFlag{Name: "region", Value: "us-east-1"},
			// The token flags, optional here: only the token mode needs them.
			&cli.StringFlag{Name: "pkcs11-module", EnvVars: []string{"HSMKMS_PKCS11_MODULE"}},
			&cli.StringFlag{Name: "token-label", EnvVars: []string{"HSMKMS_TOKEN_LABEL"}},
			&cli.StringFlag{Name: "token-serial", EnvVars: []string{"HSMKMS_TOKEN_SERIAL"}},
			&cli.StringFlag{Name: "pin-file", EnvVars: []string{"HSMKMS_PIN_FILE"}},
			allowInsecurePINFileFlag(),
			&cli.IntFlag{Name: "pool-size", Value: 4, EnvVars: []string{"HSMKMS_POOL_SIZE"}},
		},
		Action: benchTarget,
	}
}

func benchTarget(c *cli.Context) error {
	var h http.Handler
	switch c.String("mode") {
	case "null":
		h = nullTarget(c)
	case "xks-null":
		h = xksNullTarget()
	case "token":
		tok, err := openToken(c)
		if err != nil {
			return err
		}
		defer tok.Close()
		th, cleanup, err := tokenTarget(c.Context, tok)
		if err != nil {
			return err
		}
		defer cleanup()
		h = th
	default:
		return cli.Exit("hsmkms: --mode must be null, token or xks-null", ExitUsage)
	}
	l, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	fmt.Fprintf(c.App.Writer, "http://%s\n", l.Addr())
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return srv.Shutdown(context.Background())
}

// staticCredentials authenticates the one principal given in the
// environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
type staticCredentials struct{ id, secret string }

func (s staticCredentials) Credentials(_ context.Context, id string) (service.Credentials, error) {
	if id != s.id {
		return service.Credentials{}, service.ErrUnknownPrincipal
	}
	return service.Credentials{AccessKeyID: id, Secret: s.secret}, nil
}

// cannedBlob is shaped like a ciphertext blob; the null target never reads it.
var cannedBlob = make([]byte, 100)

func nullTarget(c *cli.Context) http.Handler {
	v := auth.New(auth.Config{Region: c.String("region"),
		Credentials: staticCredentials{os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")}})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if _, err := v.Verify(r.Context(), r, body, r.RemoteAddr); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		writeCanned(w, r.Header.Get("X-Amz-Target"), make([]byte, 32))
	})
}

// xksNullTarget verifies XKS requests signed with the environment's
// credentials and answers with canned JSON of the operation's shape.
func xksNullTarget() http.Handler {
	v := auth.New(auth.Config{Service: "kms-xks-proxy", SignedHeadersOnly: true})
	creds := staticCredentials{os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")}
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	encrypted, _ := json.Marshal(map[string]string{"ciphertext": b64(32), "ciphertextMetadata": b64(5),
		"initializationVector": b64(12), "authenticationTag": b64(16)})
	decrypted, _ := json.Marshal(map[string]string{"plaintext": b64(32)})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if _, err := v.VerifyWith(r.Context(), r, body, r.RemoteAddr, creds); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/decrypt") {
			w.Write(decrypted)
			return
		}
		w.Write(encrypted)
	})
}

// writeCanned answers op with a response of the right shape.
func writeCanned(w http.ResponseWriter, target string, plain []byte) {
	arn := "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-0000-0000-000000000000"
	var out any
	switch strings.TrimPrefix(target, "TrentService.") {
	case "GenerateDataKey":
		out = service.GenerateDataKeyOutput{CiphertextBlob: cannedBlob, Plaintext: plain, KeyId: arn}
	case "Decrypt":
		out = service.DecryptOutput{Plaintext: plain, KeyId: arn, EncryptionAlgorithm: "SYMMETRIC_DEFAULT"}
	default:
		out = struct{}{}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

// tokenTarget makes a master key for the run and answers GenerateDataKey
// with a token seal and Decrypt with a token unseal.
func tokenTarget(ctx context.Context, tok *hsm.Token) (http.Handler, func(), error) {
	id, err := hsm.NewObjectID()
	if err != nil {
		return nil, nil, err
	}
	if err := tok.CreateMasterKey(ctx, id, "hsmkms/bench-target"); err != nil {
		return nil, nil, err
	}
	cleanup := func() { tok.DestroyKey(context.Background(), id) }
	aad := []byte("hsmkms-v1 bench-target")
	iv, _ := hsm.NewIV()
	_, sealed, err := tok.SealDataKey(ctx, id, 32, iv, aad)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		target := r.Header.Get("X-Amz-Target")
		var plain []byte
		var err error
		switch strings.TrimPrefix(target, "TrentService.") {
		case "GenerateDataKey":
			fresh, ierr := hsm.NewIV()
			if ierr != nil {
				http.Error(w, ierr.Error(), http.StatusInternalServerError)
				return
			}
			plain, _, err = tok.SealDataKey(r.Context(), id, 32, fresh, aad)
		case "Decrypt":
			plain, err = tok.Unseal(r.Context(), id, iv, aad, sealed)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeCanned(w, target, plain)
	}), cleanup, nil
}
