package haschema

import (
	"strings"
)

// maxEntityIDLength is Home Assistant's limit on a whole entity id.
const maxEntityIDLength = 255

// binarySensorRules are the binary sensor's cross-field rules.
func binarySensorRules(c *checker, path string, cfg map[string]any) {
	on, onSet := cfg["payload_on"].(string)
	off, offSet := cfg["payload_off"].(string)
	// Home Assistant's defaults are "ON" and "OFF"; equal payloads make one
	// state unreachable (payload_on is tested first).
	if !onSet {
		on = "ON"
	}
	if !offSet {
		off = "OFF"
	}
	if c.strict && on == off {
		c.addf(path, "payload_on and payload_off are both %q: the off state can never be reached", on)
	}
}

// entityHabits reports what Home Assistant accepts from an entity config
// but what is almost certainly a mistake in one we generate. Strict only.
func (c *checker) entityHabits(path, platform string, cfg map[string]any, devName string) {
	c.defaultEntityID(path, platform, cfg)
	c.entityName(path, cfg, devName)

	if platform == "sensor" || platform == "binary_sensor" {
		// The sensor platforms refuse category config (it is for entities
		// that change a setting); MQTT drops it with a warning instead.
		if cat, ok := cfg["entity_category"].(string); ok && cat == "config" {
			c.addf(join(path, "entity_category"), "config is not allowed for a %s (Home Assistant drops it with a warning); use diagnostic", platform)
		}
	}
	if platform != "sensor" {
		return
	}
	deviceClass := lowerString(cfg["device_class"])
	_, hasOptions := cfg["options"]
	if deviceClass == "enum" && !hasOptions {
		// Accepted, but then automations and history have no list of states
		// to offer, and any stray value is stored without complaint.
		c.addf(join(path, "options"), "an enum sensor should list its options")
	}
	if deviceClass == "energy" {
		if _, ok := cfg["state_class"]; !ok {
			c.addf(join(path, "state_class"), "an energy sensor needs state_class total or total_increasing to be usable in the energy dashboard and statistics")
		}
	}
}

// defaultEntityID checks default_entity_id (Home Assistant 2025.10+), and
// the object_id it replaced. Home Assistant takes the part after the first
// dot and slugifies it, so a malformed value is accepted but yields an
// entity id nobody predicted; the domain is ignored, so a wrong one goes
// unnoticed until a dashboard or blueprint points at the wrong id.
func (c *checker) defaultEntityID(path, platform string, cfg map[string]any) {
	if _, ok := cfg["object_id"]; ok {
		c.addf(join(path, "object_id"), "deprecated since Home Assistant 2025.10 (ignored from 2026.4); send default_entity_id \"%s.<object_id>\"", platform)
	}
	v, ok := cfg["default_entity_id"]
	if !ok {
		return
	}
	p := join(path, "default_entity_id")
	s, ok := v.(string)
	if !ok {
		return // the lenient check already reported the type
	}
	domain, object, found := strings.Cut(s, ".")
	switch {
	case !found:
		c.addf(p, "%q is not of the form %s.<object_id>", s, platform)
		return
	case domain != platform:
		c.addf(p, "%q has domain %q but the entity is a %s (Home Assistant ignores the domain)", s, domain, platform)
	}
	if len(s) > maxEntityIDLength {
		c.addf(p, "%q is longer than %d characters", s, maxEntityIDLength)
	}
	if !isSlug(object) {
		c.addf(p, "object id %q is not a slug (lower-case letters, digits and single underscores, not at either end); Home Assistant would rewrite it", object)
	}
}

// isSlug mirrors Home Assistant's rule for each half of an entity id.
func isSlug(s string) bool {
	if s == "" || s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
		return false
	}
	for _, r := range s {
		if !(r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

// entityName checks the entity name against the naming rules Home
// Assistant applies since 2023.8: names are relative to the device.
func (c *checker) entityName(path string, cfg map[string]any, devName string) {
	v, present := cfg["name"]
	if !present {
		// Home Assistant then names the entity after its device class, or
		// makes it the device's main entity: rarely what was meant.
		c.addf(join(path, "name"), "not set: Home Assistant falls back to the device class or the device name")
		return
	}
	name, ok := v.(string)
	if !ok || devName == "" {
		return // null (the device's main entity) or nothing to compare with
	}
	ln, ld := strings.ToLower(strings.TrimSpace(name)), strings.ToLower(strings.TrimSpace(devName))
	switch {
	case ln == ld:
		c.addf(join(path, "name"), "%q is the device name; send null to make this the device's main entity", name)
	case strings.HasPrefix(ln, ld+" "):
		c.addf(join(path, "name"), "%q starts with the device name %q; names are relative to the device, so send it without", name, devName)
	}
}
