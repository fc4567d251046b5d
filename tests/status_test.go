package tests

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestStatusPageInChromium starts a dev server with a metrics listener on
// a port of its choosing, creates a key with the CLI, and looks at GET
// /status in Debian's headless Chromium: the DOM it builds shows the
// token's label and the key, and a screenshot of it is a real picture.
func TestStatusPageInChromium(t *testing.T) {
	chromium := requireTool(t, "chromium", "chromium")
	s := newSandbox(t)
	srv := s.startServer("", hsmkmsBin, "serve", "--dev", "--dev-dir", filepath.Join(t.TempDir(), "dev"),
		"--listen", "127.0.0.1:"+freePort(t), "--metrics-listen", "127.0.0.1:0", "--log-level", "info")
	m := regexp.MustCompile(`serving /metrics: address=(\S+)`).FindStringSubmatch(srv.stderr.String())
	if m == nil {
		t.Fatalf("the server did not log \"serving /metrics\" with its address:\n%s", srv.stderr)
	}
	url := "http://" + m[1] + "/status"
	keyID := createKey(s, srv.clientEnv(), "status page e2e")

	// Chromium's sandbox refuses to run as root, as CI runs the tests:
	// --no-sandbox. Its profile stays in the test's directory, and s.exec
	// bounds each run with a context timeout (cmdTimeout), killing its
	// process group.
	dir := t.TempDir()
	headless := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir=" + filepath.Join(dir, "profile")}
	dom := s.exec(runOpts{}, chromium, append(headless, "--dump-dom", url)...)
	if dom.code != 0 {
		t.Fatalf("chromium --dump-dom: %v", dom)
	}
	for _, want := range []string{"<h1>hsmkms status</h1>", `class="token-label"><code>` + devLabel + "</code>", `data-key="` + keyID + `"`} {
		if !strings.Contains(dom.stdout, want) {
			t.Errorf("the DOM lacks %q:\n%s", want, dom.stdout)
		}
	}
	shot := filepath.Join(dir, "status.png")
	if r := s.exec(runOpts{}, chromium, append(headless, "--screenshot="+shot, "--window-size=1280,1600", url)...); r.code != 0 {
		t.Fatalf("chromium --screenshot: %v", r)
	}
	checkScreenshot(t, shot)
}

// checkScreenshot fails unless path is a PNG of more than one colour.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if n := colours(img, 2); n < 2 {
		t.Fatalf("the screenshot (%v) is blank: %d colour", img.Bounds(), n)
	}
	t.Logf("screenshot %s, %v", path, img.Bounds())
}

// colours counts the distinct colours of img, up to enough.
func colours(img image.Image, enough int) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= enough {
				return len(seen)
			}
		}
	}
	return len(seen)
}
