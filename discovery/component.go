package discovery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// component is one entry of the device payload's "cmps": one Home Assistant
// entity. Each entity has a small builder returning one of these; adding a
// sensor or button later means adding a builder to components, nothing else.
type component struct {
	id       string // key in "cmps"; also the unique_id suffix
	platform string // Home Assistant platform: cover, sensor, binary_sensor, button…
	uniqueID string
	// live is false for an entity this vehicle does not offer. It is then
	// sent as {"p": platform} alone, which is how Home Assistant is told to
	// remove a component while keeping the rest of the device.
	live   bool
	fields object // options beyond p and unique_id, in output order
}

// newComponent fills in what every component shares: the unique id is
// derived from the vehicle and the component id, so it is stable across
// restarts and renames.
func newComponent(v Vehicle, id, platform string, live bool, fields object) component {
	return component{
		id:       id,
		platform: platform,
		uniqueID: ObjectID(v.ID) + "_" + id,
		live:     live,
		fields:   fields,
	}
}

// components lists every entity a vehicle may carry, live or not.
func components(t Topics, v Vehicle) []component {
	return []component{
		chargePortCover(t, v),
	}
}

// config renders the component's entry in "cmps".
func (c component) config() object {
	o := object{{"p", c.platform}}
	if !c.live {
		return o
	}
	o = append(o, kv{"unique_id", c.uniqueID})
	return append(o, c.fields...)
}

// chargePortCover is the charge port door as a cover (SPEC §5): device class
// door, OPEN/CLOSE without STOP, state from the bridge (never optimistic), and
// command messages not retained so a broker restart cannot re-fire them.
func chargePortCover(t Topics, v Vehicle) component {
	return newComponent(v, "charge_port", "cover", v.ChargePortDoor, object{
		{"name", "Charge port"},
		{"device_class", "door"},
		{"command_topic", t.Command},
		{"state_topic", t.State},
		{"json_attributes_topic", t.Attributes},
		{"payload_open", PayloadOpen},
		{"payload_close", PayloadClose},
		{"payload_stop", nil}, // JSON null: Home Assistant offers no STOP
		{"state_open", StateOpen},
		{"state_closed", StateClosed},
		{"state_opening", StateOpening},
		{"state_closing", StateClosing},
		{"optimistic", false},
		{"retain", false},
		{"qos", 1},
	})
}

// kv is one JSON member.
type kv struct {
	key string
	val any
}

// object is a JSON object whose members are written in slice order, so the
// payload reads in a sensible order and is byte-for-byte deterministic.
type object []kv

func (o object) sortByKey() {
	sort.Slice(o, func(i, j int) bool { return o[i].key < o[j].key })
}

// MarshalJSON writes the members in order.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for _, m := range o {
		if !first {
			b.WriteByte(',')
		}
		first = false
		k, err := marshal(m.key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		v, err := marshal(m.val)
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", m.key, err)
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
