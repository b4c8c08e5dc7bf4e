package discovery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// component is one entry of the device payload's "cmps": one Home Assistant
// entity. Each entity has a small builder returning one of these; adding an
// entity means adding a builder to components, nothing else.
type component struct {
	id       string // key in "cmps"; also the unique_id and entity id suffix
	platform string // Home Assistant platform: cover, sensor, binary_sensor, button…
	uniqueID string
	// entityID is sent as default_entity_id: Home Assistant (2025.10+) uses
	// it for the entity id the first time it sees the entity, so dashboards
	// and blueprints can be written against ids known in advance.
	entityID string
	// name is relative to the device ("Plugged in", not "Tesla … Plugged
	// in"): Home Assistant prefixes the device name itself.
	name string
	// live is false for an entity this vehicle does not offer. It is then
	// sent as {"p": platform} alone, which is how Home Assistant is told to
	// remove a component while keeping the rest of the device.
	live   bool
	fields object // platform options, in output order
}

// qos is used for every topic of every entity: state updates are retained
// and rare, so at-least-once costs nothing, and a command (cover, button)
// must not vanish on a flaky link.
const qos = 1

// newComponent fills in what every component shares: the unique id and the
// default entity id are derived from the vehicle and the component id, so
// they are stable across restarts.
func newComponent(v Vehicle, id, platform, name string, live bool, fields object) component {
	return component{
		id:       id,
		platform: platform,
		uniqueID: ObjectID(v.ID) + "_" + id,
		entityID: platform + "." + entityObjectID(v, id),
		name:     name,
		live:     live,
		fields:   fields,
	}
}

// components lists every entity a vehicle may carry, live or not. Config
// sorts them by id, so the order here is for readers only.
func components(t Topics, v Vehicle) []component {
	return []component{
		chargePortCover(t, v),
		pluggedIn(t, v),
		chargingState(t, v),
		chargePortLatch(t, v),
		chargeLimit(t, v),
		energyAdded(t, v),
		refreshButton(t, v),
		lastError(t, v),
		lastRead(t, v),
	}
}

// config renders the component's entry in "cmps".
func (c component) config() object {
	o := object{{"p", c.platform}}
	if !c.live {
		return o
	}
	o = append(o,
		kv{"unique_id", c.uniqueID},
		kv{"default_entity_id", c.entityID},
		kv{"name", c.name},
	)
	o = append(o, c.fields...)
	return append(o, kv{"qos", qos})
}

// chargePortCover is the charge port door as a cover: device class
// door, OPEN/CLOSE without STOP, state from the bridge (never optimistic), and
// command messages not retained so a broker restart cannot re-fire them.
func chargePortCover(t Topics, v Vehicle) component {
	return newComponent(v, "charge_port", "cover", "Charge port", v.ChargePortDoor, object{
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
	})
}

// The entities below all come from the tesla/charge read, so they exist
// only when the bridge can make it (Vehicle.ChargeRead). Their state topics
// carry PayloadNone for a null field, which Home Assistant shows as unknown.

// pluggedIn uses device class plug so Home Assistant says "Plugged in" /
// "Unplugged" rather than "On" / "Off".
func pluggedIn(t Topics, v Vehicle) component {
	return newComponent(v, "plugged_in", "binary_sensor", "Plugged in", v.ChargeRead, object{
		{"device_class", "plug"},
		{"state_topic", t.PluggedIn},
		{"payload_on", PayloadOn},
		{"payload_off", PayloadOff},
	})
}

// chargingState is an enum sensor: the closed option list lets Home
// Assistant offer the states in automation and history UIs, and makes it
// log any value Smartcar adds later instead of storing it silently.
func chargingState(t Topics, v Vehicle) component {
	return newComponent(v, "charging_state", "sensor", "Charging state", v.ChargeRead, object{
		{"device_class", "enum"},
		{"options", ChargingStates()},
		{"state_topic", t.ChargingState},
	})
}

// chargePortLatch is free text: Smartcar passes Tesla's latch string
// through without promising a closed set, and an enum sensor would turn an
// unexpected value into an error instead of showing it.
func chargePortLatch(t Topics, v Vehicle) component {
	return newComponent(v, "charge_port_latch", "sensor", "Charge port latch", v.ChargeRead, object{
		{"state_topic", t.ChargePortLatch},
	})
}

// chargeLimit has no device class: "battery" would claim it is the battery
// level. State class measurement keeps its history as statistics.
func chargeLimit(t Topics, v Vehicle) component {
	return newComponent(v, "charge_limit", "sensor", "Charge limit", v.ChargeRead, object{
		{"state_topic", t.ChargeLimit},
		{"unit_of_measurement", "%"},
		{"state_class", "measurement"},
	})
}

// energyAdded is per charging session and drops back to zero when a new one
// starts: total_increasing is the state class that reads a drop as a new
// cycle, so the energy dashboard sums sessions correctly.
func energyAdded(t Topics, v Vehicle) component {
	return newComponent(v, "energy_added", "sensor", "Energy added", v.ChargeRead, object{
		{"device_class", "energy"},
		{"state_topic", t.EnergyAdded},
		{"unit_of_measurement", "kWh"},
		{"state_class", "total_increasing"},
	})
}

// refreshButton asks the bridge for one tesla/charge read. Not retained, for
// the same reason as the cover's commands: each press costs a Smartcar call
// and must not be replayed by the broker.
func refreshButton(t Topics, v Vehicle) component {
	return newComponent(v, "refresh", "button", "Refresh", v.ChargeRead, object{
		{"command_topic", t.Refresh},
		{"payload_press", PayloadPress},
		{"retain", false},
	})
}

// lastError is diagnostic: it explains why the other entities are stale
// (e.g. the car is asleep) without cluttering the device's main card.
func lastError(t Topics, v Vehicle) component {
	return newComponent(v, "last_error", "sensor", "Last Smartcar error", v.ChargeRead, object{
		{"entity_category", "diagnostic"},
		{"state_topic", t.LastError},
		{"json_attributes_topic", t.LastErrorAttributes},
	})
}

// lastRead tells how old the tesla/charge values are; a timestamp sensor
// shows it as "5 minutes ago" in the user's zone.
func lastRead(t Topics, v Vehicle) component {
	return newComponent(v, "last_read", "sensor", "Last read", v.ChargeRead, object{
		{"device_class", "timestamp"},
		{"entity_category", "diagnostic"},
		{"state_topic", t.LastRead},
	})
}

// maxDeviceSlug bounds the device part of an entity id, well inside Home
// Assistant's 255-character limit for the whole id.
const maxDeviceSlug = 200

// entityObjectID is the object id part of a default entity id: the device
// name's slug and the component id, e.g. "tesla_model_3_2021_plugged_in".
// That is what Home Assistant itself would derive from the device and
// entity names, so older versions that ignore default_entity_id end up with
// the same ids.
func entityObjectID(v Vehicle, id string) string {
	dev := slug(DeviceName(v))
	if dev == "" {
		// A name of only non-Latin characters: fall back to the id, which
		// ValidateVehicleID keeps ASCII.
		dev = slug("vehicle " + v.ID)
	}
	if len(dev) > maxDeviceSlug {
		dev = strings.TrimRight(dev[:maxDeviceSlug], "_")
	}
	return dev + "_" + id
}

// slug lower-cases s and joins its runs of ASCII letters and digits with
// single underscores, as Home Assistant's slugify does for ASCII text. Home
// Assistant would transliterate other letters ("é" to "e"); here they are
// separators, which still gives a valid entity id.
func slug(s string) string {
	var b strings.Builder
	pendingSep := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if pendingSep && b.Len() > 0 {
				b.WriteByte('_')
			}
			pendingSep = false
			b.WriteRune(r)
			continue
		}
		pendingSep = true
	}
	return b.String()
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

// marshal is json.Marshal without HTML escaping: topics and names are not
// HTML, so "&" and "<" stay readable for users inspecting retained messages.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
