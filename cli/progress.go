package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// progressMin is the smallest input that gets a progress bar: a smaller
// one is done before a bar would say anything useful.
const progressMin = 4 << 20

// fileProgress is the progress bar of one input, or nil for none; its
// methods work on nil.
type fileProgress struct {
	bar *progressbar.ProgressBar
	w   io.Writer
}

// newFileProgress returns the bar of an input of total bytes (-1 when
// unknown: a running count), drawn on standard error, or nil when nothing
// is to be drawn: standard error is not a terminal, --quiet was given, or
// the input is known to be small. It is github.com/schollz/progressbar
// (bytes, rate and time left), a maintained library rather than terminal
// drawing of our own.
func newFileProgress(c *cli.Context, name string, total int64) *fileProgress {
	f, ok := c.App.ErrWriter.(*os.File)
	if !ok || c.Bool("quiet") || !term.IsTerminal(int(f.Fd())) || (total >= 0 && total < progressMin) {
		return nil
	}
	return drawProgress(f, name, total)
}

// drawProgress draws on w whatever w is; newFileProgress decides whether.
func drawProgress(w io.Writer, name string, total int64) *fileProgress {
	return &fileProgress{w: w, bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(name),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)}
}

// reader returns r, counted into the bar.
func (p *fileProgress) reader(r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return io.TeeReader(r, p.bar)
}

// end ends the bar: full on success, where it stopped on failure.
func (p *fileProgress) end(ok bool) {
	if p == nil {
		return
	}
	if ok {
		_ = p.bar.Finish()
		return
	}
	_ = p.bar.Exit()
	fmt.Fprintln(p.w)
}
