package cmd

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/snapmove/snapmove/internal/mover/catalog"
	"github.com/snapmove/snapmove/internal/mover/datapath"
)

// progress shows how a long command is getting on, on stderr (stdout stays the command's
// result, e.g. its -o json): on a terminal a bar redrawn in place; elsewhere (a log, CI,
// a pod) a plain line every few seconds, with the time since the start, the first once
// the command has run that long (a quick command writes none). Its methods may be
// called from any goroutine; Done ends the display.
type progress struct {
	w     io.Writer
	tty   bool
	now   func() time.Time
	every time.Duration // plain lines: at most one per every

	mu      sync.Mutex
	start   time.Time
	wrote   time.Time // plain: when the last line was written
	pending string    // plain: the last state, not written yet
	width   int       // terminal: the width of the line drawn
}

// plainEvery is how often a plain progress line is written at most.
const plainEvery = 5 * time.Second

// newProgress shows progress on f: a bar when f is a terminal, plain lines otherwise.
func newProgress(f *os.File) *progress {
	return &progress{w: f, tty: term.IsTerminal(int(f.Fd())), now: time.Now, every: plainEvery}
}

// Transfer shows bytes done of a transfer (datapath's OnProgress).
func (p *progress) Transfer(pr datapath.Progress) { p.Bytes(pr.BytesDone, pr.TotalBytes) }

// Bytes shows done of total bytes; total 0 or less: not known yet.
func (p *progress) Bytes(done, total int64) {
	if total <= 0 {
		p.show(-1, catalog.HumanBytes(done))
		return
	}
	p.show(float64(done)/float64(total), fmt.Sprintf("%s of %s (%s)", catalog.HumanBytes(done), catalog.HumanBytes(total), catalog.Percent(done, total)))
}

// Step shows done of total steps, text saying what they are.
func (p *progress) Step(done, total int, text string) {
	frac := -1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	p.show(frac, text)
}

// Status shows text alone.
func (p *progress) Status(text string) { p.show(-1, text) }

// barWidth is the number of cells of the bar.
const barWidth = 24

func (p *progress) show(frac float64, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.start.IsZero() {
		p.start = now
	}
	text = datapath.EscapeText(text)
	if !p.tty {
		line := fmt.Sprintf("%s: %s", shortElapsed(now.Sub(p.start)), text)
		last := p.wrote
		if last.IsZero() {
			last = p.start
		}
		if now.Sub(last) < p.every {
			p.pending = line
			return
		}
		fmt.Fprintln(p.w, line)
		p.wrote, p.pending = now, ""
		return
	}
	line := text
	if frac >= 0 {
		frac = min(frac, 1)
		n := int(frac * barWidth)
		line = "[" + strings.Repeat("#", n) + strings.Repeat(".", barWidth-n) + "] " + text
	}
	pad := max(p.width-len(line), 0)
	fmt.Fprint(p.w, "\r"+line+strings.Repeat(" ", pad))
	p.width = len(line)
}

// Done ends the display: the terminal's line is ended; the last plain state not yet
// written is, once plain lines have been written.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.tty && p.width > 0:
		fmt.Fprintln(p.w)
		p.width = 0
	case !p.tty && p.pending != "" && !p.wrote.IsZero():
		fmt.Fprintln(p.w, p.pending)
		p.pending = ""
	}
}

// shortElapsed is d to the second ("0s", "1m5s").
func shortElapsed(d time.Duration) string { return d.Round(time.Second).String() }
