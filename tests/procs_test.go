package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

var gomaxprocsLine = regexp.MustCompile(`(?m)^go_sched_gomaxprocs_threads ([0-9]+)$`)

// TestServeAdaptsGOMAXPROCS checks that serve runs on one P while it
// serves one request at a time, and on the runtime's default (here, as in
// this test process: the CPUs it may use) as soon as requests overlap;
// /metrics shows which.
func TestServeAdaptsGOMAXPROCS(t *testing.T) {
	t.Parallel()
	e, metricsURL := startSecDevMetrics(t)
	client := e.kms(e.root, "")
	key, err := client.CreateKey(t.Context(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}

	// Nothing or one request at a time: one P.
	waitGOMAXPROCS(t, metricsURL, 1, func() {})

	// Four clients at once: the default comes back while they run.
	want := runtime.GOMAXPROCS(0)
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	failed := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: key.KeyMetadata.KeyId, KeySpec: types.DataKeySpecAes256})
				if err != nil && ctx.Err() == nil {
					failed <- err
					return
				}
			}
		})
	}
	waitGOMAXPROCS(t, metricsURL, want, func() {
		select {
		case err := <-failed:
			t.Fatalf("GenerateDataKey under load: %v", err)
		default:
		}
	})
	stop()
	wg.Wait()

	// Quiet again: one P again.
	waitGOMAXPROCS(t, metricsURL, 1, func() {})
}

// waitGOMAXPROCS scrapes url until the server's GOMAXPROCS is want, calling
// check between scrapes; it fails after 30 s.
func waitGOMAXPROCS(t *testing.T, url string, want int, check func()) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := "no scrape"
	for {
		check()
		got, err := scrapeGOMAXPROCS(t.Context(), url)
		if err == nil && got == want {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = "GOMAXPROCS " + strconv.Itoa(got)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's GOMAXPROCS never became %d: last %s", want, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func scrapeGOMAXPROCS(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	m := gomaxprocsLine.FindSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("HTTP %d without go_sched_gomaxprocs_threads", resp.StatusCode)
	}
	return strconv.Atoi(string(m[1]))
}
