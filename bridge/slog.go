package bridge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"

	"github.com/sirupsen/logrus"
)

// slogHandler sends mochi's slog records to our logrus logger, so the embedded broker
// logs in the daemon's format and level instead of straight to stdout.
type slogHandler struct {
	log   logrus.FieldLogger
	level slog.Level
}

func newSlogHandler(log logrus.FieldLogger, level slog.Level) slog.Handler {
	return &slogHandler{log: log, level: level}
}

func (h *slogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *slogHandler) Handle(_ context.Context, r slog.Record) error {
	fields := logrus.Fields{}
	level := r.Level
	r.Attrs(func(a slog.Attr) bool {
		fields[a.Key] = a.Value.Any()
		// A client going away is how every connection ends, not a problem: mochi
		// reports it as a warning, which would greet users on every stop.
		if err, ok := a.Value.Any().(error); ok && (errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)) {
			level = slog.LevelDebug
		}
		return true
	})
	if level < h.level {
		return nil
	}
	entry := h.log.WithFields(fields)
	switch r.Level = level; {
	case r.Level >= slog.LevelError:
		entry.Error(r.Message)
	case r.Level >= slog.LevelWarn:
		entry.Warn(r.Message)
	case r.Level >= slog.LevelInfo:
		entry.Info(r.Message)
	default:
		entry.Debug(r.Message)
	}
	return nil
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	fields := logrus.Fields{}
	for _, a := range attrs {
		fields[a.Key] = a.Value.Any()
	}
	return &slogHandler{log: h.log.WithFields(fields), level: h.level}
}

// WithGroup flattens groups: mochi does not use them for anything we show.
func (h *slogHandler) WithGroup(string) slog.Handler { return h }
