// Package discovery builds Home Assistant MQTT discovery payloads and the
// topics they point at. Everything here is a pure function of its inputs: the
// bridge decides when to publish, this package decides what.
//
// We use device-based discovery (Home Assistant 2024.11+): one retained
// message per vehicle at <prefix>/device/smartcar2mqtt_<vehicleID>/config
// carrying the device block, the origin block, availability shared by every
// entity, and the entities themselves under "cmps". One message per vehicle
// means one publish on connect and one empty payload to remove the vehicle.
package discovery

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Payloads and states shared with the bridge, so both sides of a topic agree.
const (
	// PayloadOnline and PayloadOffline are Home Assistant's default
	// availability payloads; the bridge publishes them on the status and
	// availability topics.
	PayloadOnline  = "online"
	PayloadOffline = "offline"

	// PayloadOpen and PayloadClose are what Home Assistant sends on the
	// cover's command topic.
	PayloadOpen  = "OPEN"
	PayloadClose = "CLOSE"

	// StateOpen etc. are what the bridge publishes on the cover's state topic.
	StateOpen    = "open"
	StateClosed  = "closed"
	StateOpening = "opening"
	StateClosing = "closing"

	// PayloadNone is Home Assistant's literal for "unknown": the bridge
	// publishes it on a state topic when Smartcar returned null, so the
	// entity shows "unknown" instead of a stale or invented value.
	PayloadNone = "None"

	// PayloadOn and PayloadOff are the plugged-in binary sensor's states.
	PayloadOn  = "ON"
	PayloadOff = "OFF"

	// ChargingStateCharging etc. are the charging-state sensor's states:
	// Smartcar's charge "state" values, passed through unchanged so the
	// enum sensor's options match what Smartcar documents.
	ChargingStateCharging     = "CHARGING"
	ChargingStateFullyCharged = "FULLY_CHARGED"
	ChargingStateNotCharging  = "NOT_CHARGING"

	// PayloadPress is what Home Assistant sends on the refresh topic when
	// the Refresh button is pressed (the bridge accepts any payload there).
	PayloadPress = "PRESS"

	// LastErrorNone is the last-error sensor's state while the latest
	// Smartcar call succeeded. It is deliberately not PayloadNone: "no
	// error" is a known state, not an unknown one.
	LastErrorNone = "none"

	// IDPrefix namespaces our device identifiers, unique ids and object ids
	// so they cannot collide with another integration's.
	IDPrefix = "smartcar2mqtt_"
)

// Settings are the installation-wide inputs to discovery.
type Settings struct {
	Prefix    string // HA_DISCOVERY_PREFIX, e.g. "homeassistant"
	BaseTopic string // MQTT_BASE_TOPIC, e.g. "smartcar2mqtt"
	Origin    Origin
}

// Origin identifies this application to Home Assistant (shown in its logs
// and on the device page). Name is required by Home Assistant.
type Origin struct {
	Name, SWVersion, SupportURL string
}

// Vehicle is what discovery needs to know about one car.
type Vehicle struct {
	ID, Make, Model string
	Year            int
	// ChargePortDoor says whether the charge port cover is offered (Smartcar
	// has the door command for Tesla only).
	ChargePortDoor bool
	// ChargeRead says whether the bridge can read tesla/charge for this car
	// (a Tesla with the read_charge permission). The sensors fed by that
	// read and the Refresh button that triggers it are offered only then:
	// without it they would stay "unknown" forever and the button would
	// spend nothing but a failed call.
	ChargeRead bool
}

// Topics are one vehicle's topics under the base topic.
type Topics struct {
	// Availability is the vehicle's online/offline topic.
	Availability string
	// Command, State and Attributes belong to the charge port cover.
	Command, State, Attributes string
	// Refresh is the Refresh button's command topic: one tesla/charge read.
	Refresh string

	// The state topics below are all published (retained) from one
	// tesla/charge read, so they cost no extra Smartcar call. Each carries
	// PayloadNone when Smartcar returned null for its field.

	// PluggedIn carries PayloadOn or PayloadOff.
	PluggedIn string
	// ChargingState carries one of ChargingStates().
	ChargingState string
	// ChargePortLatch carries Smartcar's latch string as given (e.g.
	// "ENGAGED"); it is free text because Smartcar does not promise a
	// closed set.
	ChargePortLatch string
	// ChargeLimit carries the charge limit in percent, e.g. "80".
	ChargeLimit string
	// EnergyAdded carries the energy added by the current or last session
	// in kWh, e.g. "12.3".
	EnergyAdded string
	// LastError carries LastErrorPayload's "TYPE:CODE", or LastErrorNone.
	LastError string
	// LastErrorAttributes carries LastErrorAttrs as JSON.
	LastErrorAttributes string
	// LastRead carries TimestampPayload of the last successful read.
	LastRead string
}

// StatusTopic is the bridge-wide online/offline topic (the MQTT will).
func StatusTopic(base string) string { return base + "/status" }

// VehicleTopics returns the per-vehicle topics. It does not validate the id;
// Config and ValidateVehicleID do.
func VehicleTopics(base, vehicleID string) Topics {
	v := base + "/" + vehicleID
	return Topics{
		Availability: v + "/availability",
		Command:      v + "/charge_port/set",
		State:        v + "/charge_port/state",
		Attributes:   v + "/charge_port/attributes",
		Refresh:      v + "/refresh",

		PluggedIn:           v + "/plugged_in",
		ChargingState:       v + "/charging_state",
		ChargePortLatch:     v + "/charge_port_latch",
		ChargeLimit:         v + "/charge_limit",
		EnergyAdded:         v + "/energy_added",
		LastError:           v + "/last_error",
		LastErrorAttributes: v + "/last_error/attributes",
		LastRead:            v + "/last_read",
	}
}

// Retained lists every topic the bridge publishes retained for the vehicle
// (not Command and Refresh, which Home Assistant publishes to): what must be
// cleared, with empty retained messages, when the vehicle is removed.
func (t Topics) Retained() []string {
	return []string{
		t.Availability, t.State, t.Attributes,
		t.PluggedIn, t.ChargingState, t.ChargePortLatch, t.ChargeLimit, t.EnergyAdded,
		t.LastError, t.LastErrorAttributes, t.LastRead,
	}
}

// ChargingStates lists the charging-state sensor's options, in the order
// Home Assistant shows them. It returns a fresh slice each call, so no
// caller can change another's.
func ChargingStates() []string {
	return []string{ChargingStateCharging, ChargingStateFullyCharged, ChargingStateNotCharging}
}

// ObjectID is the vehicle's device object id: the last level of its
// discovery topic and its device identifier.
func ObjectID(vehicleID string) string { return IDPrefix + vehicleID }

// ConfigTopic is where the vehicle's device discovery payload is published
// (retained), and where an empty retained payload removes the device.
func ConfigTopic(prefix, vehicleID string) string {
	return prefix + "/device/" + ObjectID(vehicleID) + "/config"
}

// ConfigFilter subscribes to every device config under prefix, ours and others'.
func ConfigFilter(prefix string) string { return prefix + "/device/+/config" }

// VehicleFromConfigTopic is ConfigTopic's inverse: the vehicle id of one of our
// device configs, and false for a topic that is not one.
func VehicleFromConfigTopic(prefix, topic string) (string, bool) {
	// Cut piece by piece rather than against prefix+"/device/"+IDPrefix: this runs
	// for every message the bridge receives, and the concatenation allocated.
	rest, ok := strings.CutPrefix(topic, prefix)
	if ok {
		rest, ok = strings.CutPrefix(rest, "/device/"+IDPrefix)
	}
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, "/config")
	if !ok || ValidateVehicleID(id) != nil {
		return "", false
	}
	return id, true
}

// ErrInvalidVehicleID is wrapped by errors about vehicle ids that cannot be
// used in topics or Home Assistant object ids.
var ErrInvalidVehicleID = errors.New("invalid vehicle id")

// ValidateVehicleID reports whether id can be used in our topics and in Home
// Assistant object ids, which must match [a-zA-Z0-9_-]+ (anything else makes
// Home Assistant ignore the discovery topic). Smartcar ids are UUIDs, which
// pass.
func ValidateVehicleID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidVehicleID)
	}
	for _, r := range id {
		if !isObjectIDRune(r) {
			return fmt.Errorf("%w %q: only letters, digits, '_' and '-' are allowed", ErrInvalidVehicleID, id)
		}
	}
	return nil
}

func isObjectIDRune(r rune) bool {
	return r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

// Config returns the device discovery payload for v, to be published
// retained at ConfigTopic(s.Prefix, v.ID).
//
// A nil payload with a nil error means the vehicle has no entity to offer:
// the bridge must then publish an empty retained payload at ConfigTopic,
// which makes Home Assistant remove the device and all its entities (a device
// config with no live component would leave stale entities behind). See
// IsClear.
//
// The output is deterministic (same input, same bytes), so the bridge may
// compare payloads to skip redundant publishes.
func Config(s Settings, v Vehicle) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if err := ValidateVehicleID(v.ID); err != nil {
		return nil, err
	}
	t := VehicleTopics(s.BaseTopic, v.ID)
	comps := components(t, v)

	live := false
	cmps := make(object, 0, len(comps))
	for _, c := range comps {
		live = live || c.live
		cmps = append(cmps, kv{c.id, c.config()})
	}
	if !live {
		return nil, nil
	}
	cmps.sortByKey()

	payload := object{
		{"dev", deviceBlock(v)},
		{"o", originBlock(s.Origin)},
		// Shared at the root so every component inherits it: the entities are
		// available only while both the bridge and the vehicle are.
		{"availability", []object{
			availabilityItem(StatusTopic(s.BaseTopic)),
			availabilityItem(t.Availability),
		}},
		{"availability_mode", "all"},
		{"cmps", cmps},
	}
	b, err := marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode discovery payload for vehicle %s: %w", v.ID, err)
	}
	return b, nil
}

// IsClear reports whether payload is the "remove this device" payload that
// Config returns (nil) when a vehicle has nothing to offer.
func IsClear(payload []byte) bool { return len(payload) == 0 }

func availabilityItem(topic string) object {
	return object{
		{"topic", topic},
		{"payload_available", PayloadOnline},
		{"payload_not_available", PayloadOffline},
	}
}

func deviceBlock(v Vehicle) object {
	dev := object{
		{"ids", []string{ObjectID(v.ID)}},
		{"name", DeviceName(v)},
	}
	if mf := titleMake(v.Make); mf != "" {
		dev = append(dev, kv{"mf", mf})
	}
	// Home Assistant's device registry has no model-year field; the year is
	// part of the device name instead.
	if m := strings.TrimSpace(v.Model); m != "" {
		dev = append(dev, kv{"mdl", m})
	}
	return dev
}

func originBlock(o Origin) object {
	b := object{{"name", o.Name}}
	if o.SWVersion != "" {
		b = append(b, kv{"sw", o.SWVersion})
	}
	if o.SupportURL != "" {
		b = append(b, kv{"url", o.SupportURL})
	}
	return b
}

// DeviceName is the Home Assistant device name: make, model and year, e.g.
// "Tesla Model 3 2021". Entity names are relative to it ("Charge port"), so
// Home Assistant shows "Tesla Model 3 2021 Charge port".
func DeviceName(v Vehicle) string {
	parts := make([]string, 0, 3)
	if mf := titleMake(v.Make); mf != "" {
		parts = append(parts, mf)
	}
	if m := strings.TrimSpace(v.Model); m != "" {
		parts = append(parts, m)
	}
	if v.Year > 0 {
		parts = append(parts, strconv.Itoa(v.Year))
	}
	if len(parts) == 0 {
		return "Vehicle " + v.ID
	}
	return strings.Join(parts, " ")
}

// titleMake turns Smartcar's upper-case make ("TESLA", "MERCEDES-BENZ",
// "LAND ROVER") into the brand's usual spelling. Makes already in mixed case
// are kept as given; acronym brands stay upper case.
func titleMake(mk string) string {
	mk = strings.TrimSpace(mk)
	if mk == "" {
		return ""
	}
	if strings.ToUpper(mk) != mk && strings.ToLower(mk) != mk {
		return mk // mixed case: someone already spelled it
	}
	switch strings.ToUpper(mk) {
	case "BMW", "GMC", "MINI":
		return strings.ToUpper(mk)
	}
	var b strings.Builder
	upperNext := true
	for _, r := range mk {
		if upperNext {
			b.WriteRune(unicode.ToUpper(r))
		} else {
			b.WriteRune(unicode.ToLower(r))
		}
		upperNext = !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}
	return b.String()
}

// Validate reports what Home Assistant would not take in the settings, for
// every vehicle alike.
func (s Settings) Validate() error {
	var errs []error
	if err := ValidateTopicRoot(s.Prefix); err != nil {
		errs = append(errs, fmt.Errorf("discovery prefix %w", err))
	}
	if err := ValidateTopicRoot(s.BaseTopic); err != nil {
		errs = append(errs, fmt.Errorf("base topic %w", err))
	}
	if strings.TrimSpace(s.Origin.Name) == "" {
		errs = append(errs, errors.New("origin name is empty (Home Assistant requires it)"))
	}
	if s.Origin.SupportURL != "" {
		if u, err := url.Parse(s.Origin.SupportURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("origin support URL %q is not an http(s) URL", s.Origin.SupportURL))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("discovery settings: %w", errors.Join(errs...))
	}
	return nil
}

// ValidateTopicRoot reports whether t can be the discovery prefix or the base
// topic: a root every topic is built on ("<root>/..."), so it must keep every
// such topic valid for publishing (MQTT's and Home Assistant's rules) and not
// produce an empty topic level at the join. The error reads after the root's
// name ("base topic " + err.Error()). The config package checks
// MQTT_BASE_TOPIC and HA_DISCOVERY_PREFIX with it, so the daemon never starts
// with a root Config would then refuse.
func ValidateTopicRoot(t string) error {
	switch {
	case t == "":
		return errors.New("is empty")
	case strings.HasSuffix(t, "/"):
		return fmt.Errorf("%q ends with '/'", t)
	case strings.ContainsAny(t, "+#"):
		return fmt.Errorf("%q contains an MQTT wildcard (+ or #)", t)
	case !utf8.ValidString(t):
		return errors.New("is not valid UTF-8")
	case len(t) > 60000:
		// leaves room for the suffixes under MQTT's 65535-byte limit
		return errors.New("is too long (over 60000 bytes)")
	}
	for _, r := range t {
		if r <= 0x1f || (r >= 0x7f && r <= 0x9f) || (r >= 0xfdd0 && r <= 0xfdef) || r&0xfffe == 0xfffe {
			return fmt.Errorf("%q contains a control character or a Unicode non-character", t)
		}
	}
	return nil
}
