package controller

import (
	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
)

// NewLogr gives controller-runtime (which logs through logr) the same logrus logger the
// rest of snapmove uses. logr verbosity V(1) and above becomes Debug.
func NewLogr(log logrus.FieldLogger) logr.Logger {
	return logr.New(&logrusSink{log: log})
}

type logrusSink struct {
	log  logrus.FieldLogger
	name string
}

func (s *logrusSink) Init(logr.RuntimeInfo) {}

func (s *logrusSink) Enabled(level int) bool {
	if l, ok := s.log.(*logrus.Entry); ok {
		return level == 0 || l.Logger.IsLevelEnabled(logrus.DebugLevel)
	}
	if l, ok := s.log.(*logrus.Logger); ok {
		return level == 0 || l.IsLevelEnabled(logrus.DebugLevel)
	}
	return level == 0
}

func (s *logrusSink) entry(kv []any) logrus.FieldLogger {
	log := s.log
	if s.name != "" {
		log = log.WithField("logger", s.name)
	}
	return log.WithFields(fields(kv))
}

func (s *logrusSink) Info(level int, msg string, kv ...any) {
	if level > 0 {
		s.entry(kv).Debug(msg)
		return
	}
	s.entry(kv).Info(msg)
}

func (s *logrusSink) Error(err error, msg string, kv ...any) {
	s.entry(kv).WithError(err).Error(msg)
}

func (s *logrusSink) WithValues(kv ...any) logr.LogSink {
	return &logrusSink{log: s.log.WithFields(fields(kv)), name: s.name}
}

func (s *logrusSink) WithName(name string) logr.LogSink {
	if s.name != "" {
		name = s.name + "." + name
	}
	return &logrusSink{log: s.log, name: name}
}

func fields(kv []any) logrus.Fields {
	f := logrus.Fields{}
	for i := 0; i+1 < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			continue
		}
		f[k] = kv[i+1]
	}
	return f
}
