package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/sirupsen/logrus"
)

// slogHandler sends mochi's slog records to our logrus logger, so the broker logs in
// the daemon's format and level instead of straight to stdout. It keeps two rules
// mochi does not:
//   - no payload and no password reaches the log. mochi attaches whole packets to
//     some records (a PUBLISH with its payload in decimal bytes, a CONNECT with its
//     password); they are replaced by their type and topic.
//   - a line says something a user can act on, once. What the access hook already
//     reported with its reason (a refused login or publish), a client leaving, and
//     the broker's own stop are not repeated as warnings.
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
		fields[a.Key] = safeValue(a.Value.Any())
		if err, ok := a.Value.Any().(error); ok && routine(err) {
			level = slog.LevelDebug
		}
		return true
	})
	if level < h.level {
		return nil
	}
	msg := r.Message
	if msg == "" {
		// mochi's listeners report a connection that ended in error with no message.
		msg = "client connection ended"
	}
	entry := h.log.WithFields(fields)
	switch {
	case level >= slog.LevelError:
		entry.Error(msg)
	case level >= slog.LevelWarn:
		entry.Warn(msg)
	case level >= slog.LevelInfo:
		entry.Info(msg)
	default:
		entry.Debug(msg)
	}
	return nil
}

// routine errors are how connections normally end, or were reported already.
func routine(err error) bool {
	for _, e := range []error{
		net.ErrClosed, io.EOF, // a client going away: how every connection ends
		packets.CodeDisconnect,            // a client saying goodbye
		packets.ErrServerShuttingDown,     // our own Close, and a CONNECT refused during it
		packets.ErrSessionTakenOver,       // the access hook reports the take-over
		packets.ErrBadUsernameOrPassword,  // the access hook reports the refused login
		packets.ErrNotAuthorized,          // the access hook reports the refused publish
		packets.CodeDisconnectWillMessage, // a client leaving with its will on purpose
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	fields := logrus.Fields{}
	for _, a := range attrs {
		fields[a.Key] = safeValue(a.Value.Any())
	}
	return &slogHandler{log: h.log.WithFields(fields), level: h.level}
}

// WithGroup flattens groups: mochi does not use them for anything we show.
func (h *slogHandler) WithGroup(string) slog.Handler { return h }

// safeValue is what the log may show of a value mochi attaches to a record.
func safeValue(v any) any {
	switch v := v.(type) {
	case packets.Packet:
		return describePacket(v)
	case *packets.Packet:
		if v == nil {
			return nil
		}
		return describePacket(*v)
	case mqtt.Will:
		return fmt.Sprintf("will on %q", v.TopicName)
	case []byte:
		return fmt.Sprintf("%d bytes", len(v))
	}
	return v
}

// describePacket names a packet by its type and topics, never its payload or
// credentials.
func describePacket(pk packets.Packet) string {
	name := packets.PacketNames[pk.FixedHeader.Type]
	switch pk.FixedHeader.Type {
	case packets.Publish:
		return fmt.Sprintf("%s %q qos %d retain %t, %d bytes", name, pk.TopicName, pk.FixedHeader.Qos, pk.FixedHeader.Retain, len(pk.Payload))
	case packets.Subscribe, packets.Unsubscribe:
		filters := make([]string, len(pk.Filters))
		for i, f := range pk.Filters {
			filters[i] = fmt.Sprintf("%q", f.Filter)
		}
		return name + " " + strings.Join(filters, " ")
	case packets.Connect:
		return fmt.Sprintf("%s client %q user %q", name, pk.Connect.ClientIdentifier, pk.Connect.Username)
	}
	return name
}
