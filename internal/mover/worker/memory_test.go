package worker

import (
	"runtime/debug"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
)

func TestTuneMemory(t *testing.T) {
	oldLimit, oldGC := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	defer func() { debug.SetMemoryLimit(oldLimit); debug.SetGCPercent(oldGC) }()

	TuneMemory("1000", logrus.New())
	require.Equal(t, int64(800), debug.SetMemoryLimit(-1), "80% of the container's limit")
	require.Equal(t, dataPathGCPercent, debug.SetGCPercent(dataPathGCPercent))
	TuneMemory("", logrus.New())
	require.Equal(t, int64(800), debug.SetMemoryLimit(-1), "no limit: unchanged")

	debug.SetGCPercent(10) // GOGC=10 asks for less: kept
	TuneMemory("", logrus.New())
	require.Equal(t, 10, debug.SetGCPercent(-1))
	TuneMemory("", logrus.New()) // GOGC=off: kept
	require.Equal(t, -1, debug.SetGCPercent(100))
}
