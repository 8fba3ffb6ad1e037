package backup

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/kopia/kopia/snapshot/upload"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

// uploadProgress adapts kopia's upload hooks to OnProgress like Velero's kopia.Progress:
// BytesDone = hashed + cached bytes, TotalBytes = the estimate (or the device size).
type uploadProgress struct {
	upload.NullUploadProgress

	hashed, cached, estimated atomic.Int64
	fixedTotal                int64
	report                    func(datapath.Progress)
	interval                  time.Duration
	next                      atomic.Int64
	log                       logrus.FieldLogger

	mu       sync.Mutex // serializes reports
	finished bool

	// firstErr is the first entry that could not be backed up (FailFast stops the
	// upload there), kept with its type so the caller can tell a store outage from an
	// unreadable source file.
	firstErrOnce sync.Once
	firstErr     error
}

func newUploadProgress(report func(datapath.Progress), interval time.Duration, fixedTotal int64, log logrus.FieldLogger) *uploadProgress {
	if interval <= 0 {
		interval = datapath.DefaultProgressInterval
	}
	return &uploadProgress{report: report, interval: interval, fixedTotal: fixedTotal, log: log}
}

func (p *uploadProgress) Enabled() bool { return true }

func (p *uploadProgress) EstimationParameters() upload.EstimationParameters {
	return upload.EstimationParameters{Type: upload.EstimationTypeClassic, AdaptiveThreshold: 300000}
}

func (p *uploadProgress) EstimatedDataSize(_ int64, totalBytes int64) {
	p.estimated.Store(totalBytes)
	p.maybeReport()
}

func (p *uploadProgress) HashedBytes(n int64) {
	p.hashed.Add(n)
	p.maybeReport()
}

func (p *uploadProgress) CachedFile(_ string, n int64) {
	p.cached.Add(n)
	p.maybeReport()
}

func (p *uploadProgress) FinishedDirectory(string) { p.maybeReport() }

func (p *uploadProgress) Error(entryPath string, err error, isIgnored bool) {
	entry := p.log.WithError(err).WithField("path", entryPath)
	if isIgnored {
		entry.Warn("ignored an entry that could not be backed up")
		return
	}
	entry.Error("could not back up an entry")
	p.firstErrOnce.Do(func() { p.firstErr = errors.Wrapf(err, "backing up %s", entryPath) })
}

func (p *uploadProgress) maybeReport() {
	if p.report == nil {
		return
	}
	now := time.Now().UnixNano()
	next := p.next.Load()
	if now < next || !p.next.CompareAndSwap(next, now+p.interval.Nanoseconds()) {
		return
	}
	if !p.mu.TryLock() {
		return // a report is running; the next hook reports
	}
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	total := p.fixedTotal
	if total == 0 {
		total = p.estimated.Load()
	}
	p.report(datapath.Progress{TotalBytes: total, BytesDone: p.hashed.Load() + p.cached.Load()})
}

// finish sends the last report; no report follows it.
func (p *uploadProgress) finish(total int64) {
	if p.report == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished = true
	p.report(datapath.Progress{TotalBytes: total, BytesDone: total})
}
