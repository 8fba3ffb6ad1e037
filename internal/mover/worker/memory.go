package worker

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
)

// Memory tuning of the worker process. It belongs to the process that moves one volume's
// bytes, not to the kopia package, which the controller also calls on every repository
// check. Measured with the kopia package's memory tests and `make bench`.

// dataPathGCPercent is the garbage collector's target in a worker. Nearly all the data
// path's garbage is chunk data (GetContent returns a new copy of every chunk a restore
// reads), which holds no pointers and costs the collector little; Go's default of 100,
// letting the heap grow to twice the live data between collections, added half the peak
// RSS of a restore. Measured on 2 CPUs, restoring 2 GiB: 25 instead of 100 took the peak
// from 187–194 to 125–135 MiB at the same wall and CPU time.
const dataPathGCPercent = 25

// TuneMemory sets the worker process's memory behaviour: the collector's target to
// dataPathGCPercent (unless GOGC asks for less, or for no collector), and the soft memory
// limit to 80% of limitBytes (the container's memory limit, from the downward API),
// leaving room for what the runtime does not account (kernel buffers, cgo). Empty or
// invalid limits leave the limit alone.
func TuneMemory(limitBytes string, log logrus.FieldLogger) {
	if prev := debug.SetGCPercent(dataPathGCPercent); prev < dataPathGCPercent {
		debug.SetGCPercent(prev) // lower already, or off (-1)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(limitBytes), 10, 64)
	if err != nil || n <= 0 {
		return
	}
	soft := n / 10 * 8
	debug.SetMemoryLimit(soft)
	log.WithField("memoryLimit", fmt.Sprint(soft)).Debug("set Go memory limit")
}

// releaseKeyDerivationMemory returns the garbage of the password key derivation to the
// operating system once the repository is open. Opening a repository derives its key
// with scrypt, which allocates 64 MiB at once; left to the collector, that sets the next
// heap goal to twice its size and the data path's first allocations fill it, which added
// up to 64 MiB to the peak RSS of a worker (measured: 219 → 150 MiB for a restore). One
// collection of a still-small heap costs about a millisecond.
func releaseKeyDerivationMemory() { debug.FreeOSMemory() }
