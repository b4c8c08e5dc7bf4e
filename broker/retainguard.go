package broker

import (
	"bytes"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// retainGuard works around a data race in mochi v2.7.9 (upstream issue #200): a
// retained publish writes a topic's entry in the retained index while a new
// subscription to a wildcard filter reads it, unlocked. The race detector reports it,
// and a subscriber can miss a retained message, e.g. Home Assistant missing discovery
// that the daemon republishes while it subscribes to homeassistant/#. The guard
// makes the two exclusive: a retained publish holds the write lock, a subscribe the
// read lock, each for the whole time mochi processes the packet.
//
// It brackets processing with OnPacketRead and OnPacketProcessed. mochi skips
// OnPacketProcessed for a packet that fails its validation, so the guard locks only
// packets that pass that same validation.
type retainGuard struct {
	mqtt.HookBase
	mu            sync.RWMutex
	topicAliasMax uint16
}

func (g *retainGuard) ID() string { return "smartcar2mqtt-retain-guard" }

func (g *retainGuard) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPacketRead, mqtt.OnPacketProcessed}, []byte{b})
}

type guardKind int

const (
	guardNone guardKind = iota
	guardWrite
	guardRead
)

func (g *retainGuard) kind(pk *packets.Packet) guardKind {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.FixedHeader.Retain && pk.PublishValidate(g.topicAliasMax) == packets.CodeSuccess {
			return guardWrite
		}
	case packets.Subscribe:
		if pk.SubscribeValidate() == packets.CodeSuccess {
			return guardRead
		}
	}
	return guardNone
}

func (g *retainGuard) OnPacketRead(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	switch g.kind(&pk) {
	case guardWrite:
		g.mu.Lock()
	case guardRead:
		g.mu.RLock()
	}
	return pk, nil
}

func (g *retainGuard) OnPacketProcessed(_ *mqtt.Client, pk packets.Packet, _ error) {
	switch g.kind(&pk) {
	case guardWrite:
		g.mu.Unlock()
	case guardRead:
		g.mu.RUnlock()
	}
}
