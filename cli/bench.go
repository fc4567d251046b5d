package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/hsmkms/hsmkms/service"
	"github.com/urfave/cli/v2"
)

// benchCommand is the lean load generator: net/http, the SDK's SigV4
// signer and request bodies built once, so that the client spends little of
// the machine's CPU next to the server it measures.
func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "load a KMS endpoint and print rate, p50, p99 and errors",
		Flags: append(clientFlags(),
			&cli.StringFlag{Name: "op", Value: "GenerateDataKey", Usage: "GenerateDataKey, Decrypt, Encrypt or GenerateRandom"},
			&cli.StringFlag{Name: "key-id", Usage: "key to use (default: create one)"},
			&cli.IntFlag{Name: "concurrency", Value: 16, Usage: "concurrent clients"},
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "how long to load"},
			&cli.StringFlag{Name: "xks", EnvVars: []string{"HSMKMS_BENCH_XKS"},
				Usage: "load the XKS proxy API at this URL (serve --xks-listen) instead: --op Encrypt or Decrypt through an external key store the run makes and deletes"},
			&cli.StringFlag{Name: "xks-prefix", EnvVars: []string{"HSMKMS_BENCH_XKS_PREFIX"},
				Usage: "with --xks: use this existing external key store and --key-id (an external key ID), signing with the client's credentials as the store's; nothing is made or deleted"},
		),
		Description: "Each client sends the same request over and over; every request is signed afresh.\n" +
			"With --xks URL the run creates a key and an external key store with one credential\n" +
			"through the admin API, loads the XKS proxy API's Encrypt or Decrypt (SigV4 for\n" +
			"kms-xks-proxy, over host and x-amz-date, as AWS KMS signs), then deletes the store\n" +
			"and schedules the key's deletion. With --xks-prefix and --key-id it uses an existing\n" +
			"store and key instead, signing with the credentials given (an XKS credential).",
		Action: bench,
	}
}

// benchResult is what bench prints.
type benchResult struct {
	Op          string  `json:"op"`
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	Rate        float64 `json:"rate_per_second"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	FirstError  string  `json:"first_error,omitempty"`
}

func bench(c *cli.Context) error {
	cl, err := newLeanClient(c)
	if err != nil {
		return err
	}
	cleanup := func() error { return nil }
	var send sender
	if c.String("xks") != "" {
		send, err = xksBench(c, cl, &cleanup)
	} else {
		var body []byte
		if body, err = benchBody(c, cl, &cleanup); err == nil {
			send = cl.kmsSender("TrentService."+c.String("op"), body)
		}
	}
	if err != nil {
		if cerr := cleanup(); cerr != nil {
			fmt.Fprintf(c.App.ErrWriter, "hsmkms: cleaning up after the failed set-up: %v\n", cerr)
		}
		return err
	}
	res := load(c.Context, send, c.Int("concurrency"), c.Duration("duration"))
	if err := cleanup(); err != nil {
		// The run itself succeeded: say what is left, do not fail it.
		fmt.Fprintf(c.App.ErrWriter, "hsmkms: the run's key is left: scheduling its deletion failed: %v\n", err)
	}
	res.Op = c.String("op")
	return printOut(c, res, func(w io.Writer) {
		header(w, "OP", "CONCURRENCY", "REQUESTS", "RATE/S", "P50 MS", "P99 MS", "ERRORS")
		row(w, res.Op, res.Concurrency, res.Requests, fmt.Sprintf("%.0f", res.Rate), fmt.Sprintf("%.2f", res.P50ms), fmt.Sprintf("%.2f", res.P99ms), res.Errors)
		if res.FirstError != "" {
			row(w, "first error:", res.FirstError)
		}
	})
}

// benchBody builds the one request body every call of the run sends; when
// it creates a key for the run it sets *cleanup to schedule its deletion.
func benchBody(c *cli.Context, cl *leanClient, cleanup *func() error) ([]byte, error) {
	keyID := c.String("key-id")
	op := c.String("op")
	if keyID == "" && op != "GenerateRandom" {
		var out service.KeyOutput
		if err := cl.call(c.Context, "TrentService.CreateKey", service.CreateKeyInput{Description: "hsmkms bench"}, &out); err != nil {
			return nil, fmt.Errorf("creating a key for the run: %w", err)
		}
		keyID = out.KeyMetadata.KeyId
		// The run's own key is scheduled for deletion after the run (the
		// shortest window), not left behind by every run; --key-id
		// reuses one.
		*cleanup = func() error {
			var done service.ScheduleKeyDeletionOutput
			return cl.call(context.WithoutCancel(c.Context), "TrentService.ScheduleKeyDeletion",
				service.ScheduleKeyDeletionInput{KeyId: keyID, PendingWindowInDays: 7}, &done)
		}
	}
	ec := map[string]string{"purpose": "bench"}
	switch op {
	case "GenerateDataKey":
		return json.Marshal(service.GenerateDataKeyInput{KeyId: keyID, KeySpec: "AES_256", EncryptionContext: ec})
	case "Encrypt":
		return json.Marshal(service.EncryptInput{KeyId: keyID, Plaintext: make([]byte, 32), EncryptionContext: ec})
	case "GenerateRandom":
		return json.Marshal(service.GenerateRandomInput{NumberOfBytes: 32})
	case "Decrypt":
		var dk service.GenerateDataKeyOutput
		in := service.GenerateDataKeyInput{KeyId: keyID, KeySpec: "AES_256", EncryptionContext: ec}
		if err := cl.call(c.Context, "TrentService.GenerateDataKey", in, &dk); err != nil {
			return nil, fmt.Errorf("making a ciphertext for the run: %w", err)
		}
		return json.Marshal(service.DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: ec})
	}
	return nil, cli.Exit("hsmkms: --op must be GenerateDataKey, Decrypt, Encrypt or GenerateRandom", ExitUsage)
}

// leanClient signs and sends pre-built JSON 1.1 requests.
type leanClient struct {
	// endpoint is the first of endpoints: set-up calls go there, and load's
	// clients take the endpoints in turn (replicas without a balancer).
	endpoint, region string
	endpoints        []string
	creds            aws.Credentials
	http             *http.Client
	signer           *v4.Signer
}

func newLeanClient(c *cli.Context) (*leanClient, error) {
	given := c.String("endpoint")
	if strings.TrimSpace(given) == "" {
		return nil, cli.Exit("hsmkms: give --endpoint or HSMKMS_ENDPOINT (bench: one or more, comma-separated)", ExitUsage)
	}
	endpoints := strings.Split(given, ",")
	for i, e := range endpoints {
		// "a, b" is a list as people write it.
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, cli.Exit(fmt.Sprintf("hsmkms: --endpoint %q has an empty entry: give endpoints separated by single commas", given), ExitUsage)
		}
		var err error
		if endpoints[i], err = endpointURL(e); err != nil {
			return nil, err
		}
	}
	endpoint := endpoints[0]
	creds, err := loadCredentials(c)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	return &leanClient{endpoint: endpoint, endpoints: endpoints, region: clientRegion(c), creds: creds,
		http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, signer: v4.NewSigner()}, nil
}

// send signs body for target and returns the status and response body.
func (l *leanClient) send(ctx context.Context, target string, body []byte, hash string) (int, []byte, error) {
	return l.sendTo(ctx, l.endpoint, target, body, hash)
}

func (l *leanClient) sendTo(ctx context.Context, endpoint, target string, body []byte, hash string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", target)
	if err := l.signer.SignHTTP(ctx, l.creds, req, hash, "kms", l.region, time.Now()); err != nil {
		return 0, nil, err
	}
	resp, err := l.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

func (l *leanClient) call(ctx context.Context, target string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	status, data, err := l.send(ctx, target, body, payloadHash(body))
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", status, data)
	}
	return json.Unmarshal(data, out)
}

func payloadHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// sender sends a run's request once, from client number w, and returns
// the status and response body.
type sender func(ctx context.Context, w int) (int, []byte, error)

// kmsSender sends body for target, the clients taking the endpoints in
// turn.
func (l *leanClient) kmsSender(target string, body []byte) sender {
	hash := payloadHash(body)
	return func(ctx context.Context, w int) (int, []byte, error) {
		return l.sendTo(ctx, l.endpoints[w%len(l.endpoints)], target, body, hash)
	}
}

// load runs concurrency clients calling send for d.
func load(ctx context.Context, send sender, concurrency int, d time.Duration) benchResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      atomic.Int64
		firstErr  atomic.Value
		wg        sync.WaitGroup
	)
	start := time.Now()
	for w := range concurrency {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				t := time.Now()
				status, data, err := send(ctx, w)
				if ctx.Err() != nil {
					break // the run ended mid-request: not an error of the server
				}
				if err != nil || status != http.StatusOK {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("HTTP %d %v %.200s", status, err, data))
					continue
				}
				local = append(local, time.Since(t))
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	res := benchResult{Concurrency: concurrency, Requests: len(latencies), Errors: int(errs.Load()),
		Rate: float64(len(latencies)) / elapsed.Seconds(), P50ms: percentile(latencies, 50), P99ms: percentile(latencies, 99)}
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	return res
}

func percentile(sorted []time.Duration, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)*p/100, len(sorted)-1)
	return float64(sorted[i].Microseconds()) / 1000
}
