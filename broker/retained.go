package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/atomicfile"
)

// retainedStore keeps the embedded broker's retained messages in one JSON file, so
// Home Assistant finds discovery and states again after a restart of the container.
// mochi's own storage hooks persist whole sessions in an embedded database (and its
// bolt hook is deprecated); retained messages are all we need, a few per vehicle.
// Writes are coalesced: a burst of state changes costs one file write.
type retainedStore struct {
	mqtt.HookBase
	path string
	log  logrus.FieldLogger

	mu       sync.Mutex
	messages map[string]retainedMessage

	dirty  chan struct{} // capacity 1: "there is something to write"
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	writes int // file writes so far, by flushLoop only; read after Stop
}

type retainedMessage struct {
	Topic   string `json:"topic"`
	Payload []byte `json:"payload"`
	QoS     byte   `json:"qos"`
	Created int64  `json:"created"`
}

// flushDelay bounds how stale the file may be after a change.
const flushDelay = 500 * time.Millisecond

func openRetainedStore(path string, log logrus.FieldLogger) (*retainedStore, error) {
	s := &retainedStore{
		path:     path,
		log:      log,
		messages: map[string]retainedMessage{},
		dirty:    make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read retained messages: %w", err)
	default:
		var list []retainedMessage
		if err := json.Unmarshal(data, &list); err != nil {
			// A damaged file must not keep the broker down: the daemon republishes its
			// own retained messages on connect anyway.
			log.WithError(err).WithField("file", path).Warn("ignoring unreadable retained-message file")
		}
		for _, m := range list {
			s.messages[m.Topic] = m
		}
	}
	s.wg.Add(1)
	go s.flushLoop()
	return s, nil
}

func (s *retainedStore) ID() string { return "smartcar2mqtt-retained" }

func (s *retainedStore) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnRetainMessage, mqtt.OnRetainedExpired, mqtt.StoredRetainedMessages}, []byte{b})
}

func (s *retainedStore) StoredRetainedMessages() ([]storage.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]storage.Message, 0, len(s.messages))
	for _, m := range s.messages {
		out = append(out, storage.Message{
			TopicName:   m.Topic,
			Payload:     m.Payload,
			Created:     m.Created,
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true, Qos: m.QoS},
		})
	}
	return out, nil
}

func (s *retainedStore) OnRetainMessage(_ *mqtt.Client, pk packets.Packet, r int64) {
	s.mu.Lock()
	if len(pk.Payload) == 0 {
		delete(s.messages, pk.TopicName)
	} else {
		s.messages[pk.TopicName] = retainedMessage{Topic: pk.TopicName, Payload: bytes.Clone(pk.Payload), QoS: pk.FixedHeader.Qos, Created: pk.Created}
	}
	s.mu.Unlock()
	s.markDirty()
}

func (s *retainedStore) OnRetainedExpired(topic string) {
	s.mu.Lock()
	delete(s.messages, topic)
	s.mu.Unlock()
	s.markDirty()
}

func (s *retainedStore) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// Stop writes what is pending and ends the writer. It may be called more than once,
// and at the same time, as it is: by mochi's Close, and by Broker.Close when mochi is
// stuck. The last write happens once, after every change made before the first call.
func (s *retainedStore) Stop() error {
	s.once.Do(func() { close(s.done) })
	s.wg.Wait()
	return nil
}

func (s *retainedStore) flushLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			select {
			case <-s.dirty:
				s.flush()
			default:
			}
			return
		case <-s.dirty:
		}
		select {
		case <-time.After(flushDelay):
		case <-s.done:
		}
		s.flush()
	}
}

func (s *retainedStore) flush() {
	s.mu.Lock()
	list := make([]retainedMessage, 0, len(s.messages))
	for _, m := range s.messages {
		list = append(list, m)
	}
	s.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Topic < list[j].Topic })
	data, err := json.Marshal(list)
	if err == nil {
		err = atomicfile.Write(s.path, data, 0o600)
		s.writes++
	}
	if err != nil {
		s.log.WithError(err).Warn("could not save retained messages")
	}
}
