package status

import (
	_ "embed"
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"
)

// pageHTML is the page's template: HTML with inline CSS and SVG, which
// html/template escapes by context.
//
//go:embed page.html
var pageHTML string

func parseTemplate() (*template.Template, error) {
	t, err := template.New("status").Parse(pageHTML)
	if err != nil {
		return nil, fmt.Errorf("status: the page's template: %w", err)
	}
	return t, nil
}

// Sizes of the page's charts, in SVG user units (pixels).
const (
	barWidth  = 240 // a horizontal bar at 100 %
	sparkBar  = 6   // one bucket of a sparkline, gap included
	sparkHigh = 28  // a sparkline's height
)

// DateLayout is how the page prints dates, always in UTC.
const DateLayout = "2006-01-02 15:04 MST"

// view is a Snapshot made ready to print: numbers formatted and chart
// geometry computed, so that the template only places them.
type view struct {
	Taken, Window, Bucket, Covered string
	// Refresh is the page's automatic reload, in seconds: one bucket.
	Refresh                      int
	Token                        tokenView
	States                       []barView
	Newest, Rotations, Deletions []entryView
	Ops                          []opView
	SparkWidth, SparkHeight      int
	Seals                        []sealView
	RotateAt, Limit              string
	LimitN                       uint64
	RotateAtX                    float64
	BarWidth                     int
	Problems                     []string
}

type tokenView struct {
	Token
	Ready                    bool
	Status, Since            string
	InUseWidth, OpenWidth    float64
	InUse, Open, Size, Recov string
}

type barView struct {
	Label, Value string
	Count        int
	Width        float64
}

type entryView struct {
	ID, Aliases, Spec, State, Date, When string
}

type opView struct {
	Operation                string
	Requests, Errors         uint64
	PerSecond, ErrorShare    string
	Bars                     []sparkView
	RequestsText, ErrorsText string
	HasErrors                bool
}

type sparkView struct {
	X, ReqY, ReqH, ErrY, ErrH float64
	Title                     string
}

type sealView struct {
	KeyID, Version, Reserved, Sealed, Share string
	Current                                 bool
	ReservedN, SealedN                      uint64
	Width                                   float64
	Worn                                    bool
}

func newView(s Snapshot) view {
	v := view{
		Taken: s.Taken.UTC().Format(DateLayout), Window: duration(s.Window), Bucket: duration(s.Bucket),
		Covered: duration(s.Covered), Refresh: max(int(s.Bucket/time.Second), 5),
		Token: newTokenView(s.Token, s.Taken), SparkHeight: sparkHigh, BarWidth: barWidth,
		RotateAt: number(s.SealRotateAt), Limit: number(s.SealLimit), LimitN: s.SealLimit, Problems: s.Problems,
	}
	v.States = stateBars(s.Keys)
	v.Newest = entries(s.Newest, time.Time{})
	v.Rotations = entries(s.Rotations, s.Taken)
	v.Deletions = entries(s.Deletions, s.Taken)
	for _, r := range s.Requests {
		v.Ops = append(v.Ops, newOpView(r, s.Covered, s.Bucket))
		v.SparkWidth = len(r.Requests) * sparkBar
	}
	if s.SealLimit > 0 {
		v.RotateAtX = share(s.SealRotateAt, s.SealLimit) * barWidth
	}
	for _, u := range s.Seals {
		v.Seals = append(v.Seals, newSealView(u, s.SealRotateAt, s.SealLimit))
	}
	return v
}

func newTokenView(t Token, now time.Time) tokenView {
	v := tokenView{Token: t, Ready: t.Health.Ready && t.Answered, Status: "ready",
		InUse: strconv.Itoa(t.Pool.InUse), Open: strconv.Itoa(t.Pool.Open), Size: strconv.Itoa(t.Pool.Size),
		Recov: number(t.Health.Recoveries)}
	switch {
	case !t.Health.Ready:
		v.Status = "not ready: " + t.Health.Reason
	case !t.Answered:
		v.Status = "not answering"
	}
	if !t.Health.Since.IsZero() {
		v.Since = t.Health.Since.UTC().Format(DateLayout) + " (" + ago(now.Sub(t.Health.Since)) + ")"
	}
	if t.Pool.Size > 0 {
		v.InUseWidth = float64(t.Pool.InUse) / float64(t.Pool.Size) * barWidth
		v.OpenWidth = float64(t.Pool.Open) / float64(t.Pool.Size) * barWidth
	}
	return v
}

func stateBars(counts []StateCount) []barView {
	most := 0
	for _, c := range counts {
		most = max(most, c.Count)
	}
	out := make([]barView, 0, len(counts))
	for _, c := range counts {
		b := barView{Label: string(c.State), Count: c.Count, Value: number(uint64(c.Count))}
		if most > 0 {
			b.Width = float64(c.Count) / float64(most) * barWidth
		}
		out = append(out, b)
	}
	return out
}

// entries formats a key list; with now set, each date also says how far
// away it is.
func entries(keys []KeyEntry, now time.Time) []entryView {
	out := make([]entryView, 0, len(keys))
	for _, k := range keys {
		e := entryView{ID: k.ID, Aliases: strings.Join(k.Aliases, ", "), Spec: k.Spec, State: string(k.State),
			Date: k.Date.UTC().Format(DateLayout)}
		if !now.IsZero() {
			e.When = until(k.Date.Sub(now))
		}
		out = append(out, e)
	}
	return out
}

// newOpView draws an operation's sparkline: a bar per bucket, its height
// the bucket's requests against the operation's busiest bucket, the
// errors drawn over it in red.
func newOpView(r OperationRate, covered, bucket time.Duration) opView {
	v := opView{Operation: r.Operation, Requests: r.TotalRequests, Errors: r.TotalErrors,
		RequestsText: number(r.TotalRequests), ErrorsText: number(r.TotalErrors), HasErrors: r.TotalErrors > 0,
		PerSecond: "–", ErrorShare: "0 %"}
	if covered > 0 {
		v.PerSecond = strconv.FormatFloat(float64(r.TotalRequests)/covered.Seconds(), 'f', 2, 64)
	}
	if r.TotalRequests > 0 {
		v.ErrorShare = strconv.FormatFloat(100*float64(r.TotalErrors)/float64(r.TotalRequests), 'f', 1, 64) + " %"
	}
	var most uint64
	for _, n := range r.Requests {
		most = max(most, n)
	}
	n := len(r.Requests)
	for i := range n {
		b := sparkView{X: float64(i * sparkBar)}
		if most > 0 {
			b.ReqH = float64(r.Requests[i]) / float64(most) * sparkHigh
			b.ErrH = float64(min(r.Errors[i], r.Requests[i])) / float64(most) * sparkHigh
		}
		b.ReqY, b.ErrY = sparkHigh-b.ReqH, sparkHigh-b.ErrH
		ago := time.Duration(n-1-i) * bucket
		b.Title = fmt.Sprintf("%d requests, %d errors in the %s ending %s ago", r.Requests[i], r.Errors[i], duration(bucket), duration(ago))
		v.Bars = append(v.Bars, b)
	}
	return v
}

func newSealView(u SealUse, rotateAt, limit uint64) sealView {
	v := sealView{KeyID: u.KeyID, Version: "v" + strconv.FormatUint(uint64(u.Version), 10), Current: u.Current,
		Reserved: number(u.Reserved), Sealed: number(u.Sealed), ReservedN: u.Reserved, SealedN: u.Sealed,
		Worn: rotateAt > 0 && u.Reserved >= rotateAt}
	if limit > 0 {
		f := share(u.Reserved, limit)
		v.Share = strconv.FormatFloat(100*f, 'f', 4, 64) + " %"
		// A version that has sealed at all shows at least a sliver.
		v.Width = max(f*barWidth, 1)
	}
	return v
}

// share is n/of, at most 1.
func share(n, of uint64) float64 { return min(float64(n)/float64(of), 1) }

// number prints n with thousands separators: 1,073,741,824.
func number(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// duration prints d rounded to the largest unit that keeps it readable:
// 30 s, 15 min, 3 h, 12 days. A date set 7 days ahead a moment ago is
// still "7 days" away.
func duration(d time.Duration) string {
	in := func(unit time.Duration) string { return strconv.Itoa(int(d.Round(unit) / unit)) }
	switch {
	case d >= 47*time.Hour+30*time.Minute:
		return in(24*time.Hour) + " days"
	case d >= 119*time.Minute+30*time.Second:
		return in(time.Hour) + " h"
	case d >= 119*time.Second+500*time.Millisecond:
		return in(time.Minute) + " min"
	default:
		return in(time.Second) + " s"
	}
}

func until(d time.Duration) string {
	if d < 0 {
		return "due " + duration(-d) + " ago"
	}
	return "in " + duration(d)
}

func ago(d time.Duration) string { return duration(max(d, 0)) + " ago" }
