package docs_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	"gopkg.in/yaml.v3"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
)

// demoCar is the simulated Tesla of `smartcar2mqtt demo`, with both
// permissions, so every entity exists.
var demoCar = discovery.Vehicle{
	ID: smartcarsim.TeslaID, Make: "TESLA", Model: "Model 3", Year: 2021,
	ChargePortDoor: true, ChargeRead: true,
}

// component is what the docs rely on from one entry of the payload's cmps.
type component struct {
	Platform        string `json:"p"`
	DefaultEntityID string `json:"default_entity_id"`
	DeviceClass     string `json:"device_class"`
}

// demoComponents returns the demo car's components by discovery key, as
// discovery.Config publishes them.
func demoComponents(t *testing.T) map[string]component {
	t.Helper()
	s := discovery.Settings{Prefix: "homeassistant", BaseTopic: "smartcar2mqtt", Origin: discovery.Origin{Name: "smartcar2mqtt"}}
	b, err := discovery.Config(s, demoCar)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Cmps map[string]component `json:"cmps"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	for key, c := range p.Cmps {
		if c.DefaultEntityID == "" {
			t.Fatalf("component %s has no default_entity_id", key)
		}
	}
	return p.Cmps
}

func entityIDs(cmps map[string]component) []string {
	ids := make([]string, 0, len(cmps))
	for _, c := range cmps {
		ids = append(ids, c.DefaultEntityID)
	}
	sort.Strings(ids)
	return ids
}

func readGuide(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("home-assistant.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dashboardCard is the YAML block the guide marks as the dashboard card.
func dashboardCard(t *testing.T, guide string) string {
	t.Helper()
	_, rest, ok := strings.Cut(guide, "<!-- dashboard-card")
	if !ok {
		t.Fatal("home-assistant.md has no <!-- dashboard-card --> marker")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatal("no ```yaml block after the dashboard-card marker")
	}
	card, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("dashboard card block is not closed")
	}
	return card
}

// collectEntities gathers every entity the card refers to: values of
// "entity" keys and plain strings in "entities" lists.
func collectEntities(v any, out *[]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if s, ok := x.(string); ok && k == "entity" {
				*out = append(*out, s)
			}
			if list, ok := x.([]any); ok && k == "entities" {
				for _, item := range list {
					if s, ok := item.(string); ok {
						*out = append(*out, s)
					}
				}
			}
			collectEntities(x, out)
		}
	case []any:
		for _, x := range t {
			collectEntities(x, out)
		}
	}
}

// The card shows every entity of the demo car, under the ids discovery
// really asks Home Assistant for.
func TestDashboardCardMatchesDiscovery(t *testing.T) {
	want := entityIDs(demoComponents(t))
	var card any
	if err := yaml.Unmarshal([]byte(dashboardCard(t, readGuide(t))), &card); err != nil {
		t.Fatalf("dashboard card is not valid YAML: %v", err)
	}
	var got []string
	collectEntities(card, &got)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("card entities:\n got %v\nwant %v", got, want)
	}
}

// Every entity id the guide or a blueprint mentions for the demo car is one
// discovery really produces, and the guide's table lists each entity's key
// and id.
func TestDocumentedEntityIDsExist(t *testing.T) {
	cmps := demoComponents(t)
	known := map[string]bool{}
	for _, id := range entityIDs(cmps) {
		known[id] = true
	}
	guide := readGuide(t)
	texts := map[string]string{"home-assistant.md": guide}
	for _, f := range blueprintFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts[f] = string(b)
	}
	mention := regexp.MustCompile(`\b[a-z_]+\.tesla_model_3_2021_[a-z0-9_]+`)
	for name, text := range texts {
		for _, id := range mention.FindAllString(text, -1) {
			if !known[id] {
				t.Errorf("%s mentions %s, which discovery does not produce", name, id)
			}
		}
	}
	for key, c := range cmps {
		row := fmt.Sprintf("| `%s` | `%s` |", key, c.DefaultEntityID)
		if !strings.Contains(guide, row) {
			t.Errorf("home-assistant.md's entity table lacks %q", row)
		}
	}
}

func blueprintFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("blueprints", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// input stands for a `!input name` reference in plainValue's output.
type input string

// GoString shows the tag in %#v, so a failure tells an input from a string.
func (i input) GoString() string { return "!input " + string(i) }

// plainValue converts a YAML node into maps, lists and scalars, keeping
// `!input x` references as input values (yaml.v3 does not know the tag).
func plainValue(t *testing.T, n *yaml.Node) any {
	t.Helper()
	switch n.Kind {
	case yaml.DocumentNode:
		return plainValue(t, n.Content[0])
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i < len(n.Content); i += 2 {
			m[n.Content[i].Value] = plainValue(t, n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			l = append(l, plainValue(t, c))
		}
		return l
	case yaml.ScalarNode:
		if n.Tag == "!input" {
			return input(n.Value)
		}
		var v any
		if err := n.Decode(&v); err != nil {
			t.Fatalf("line %d: %v", n.Line, err)
		}
		return v
	case yaml.AliasNode:
		return plainValue(t, n.Alias)
	}
	t.Fatalf("line %d: unexpected YAML node kind %v", n.Line, n.Kind)
	return nil
}

// inputRefs lists every `!input` reference under v.
func inputRefs(v any, out *[]string) {
	switch x := v.(type) {
	case input:
		*out = append(*out, string(x))
	case map[string]any:
		for _, y := range x {
			inputRefs(y, out)
		}
	case []any:
		for _, y := range x {
			inputRefs(y, out)
		}
	}
}

func loadBlueprint(t *testing.T, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	root, ok := plainValue(t, &doc).(map[string]any)
	if !ok {
		t.Fatalf("%s: not a mapping", file)
	}
	return root
}

func nonEmptyString(v any) bool {
	s, ok := v.(string)
	return ok && strings.TrimSpace(s) != ""
}

// TestBlueprintsWellFormed checks what Home Assistant's blueprint schema
// requires, plus the mistakes it would only report on import: an !input
// naming no declared input, an input without a selector, an unused input,
// and mixing the old singular keys with the new plural ones.
func TestBlueprintsWellFormed(t *testing.T) {
	files := blueprintFiles(t)
	if len(files) != 2 {
		t.Fatalf("blueprints: %v, want 2", files)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			root := loadBlueprint(t, file)
			meta, ok := root["blueprint"].(map[string]any)
			if !ok {
				t.Fatal("no blueprint: mapping")
			}
			for _, k := range []string{"name", "description"} {
				if !nonEmptyString(meta[k]) {
					t.Errorf("blueprint.%s missing or empty", k)
				}
			}
			if meta["domain"] != "automation" {
				t.Errorf("blueprint.domain = %v, want automation", meta["domain"])
			}
			inputs, ok := meta["input"].(map[string]any)
			if !ok || len(inputs) == 0 {
				t.Fatal("blueprint.input missing or empty")
			}
			for name, v := range inputs {
				in, ok := v.(map[string]any)
				if !ok {
					t.Errorf("input %s is not a mapping", name)
					continue
				}
				if !nonEmptyString(in["name"]) {
					t.Errorf("input %s has no name", name)
				}
				sel, ok := in["selector"].(map[string]any)
				if !ok || len(sel) != 1 {
					t.Errorf("input %s: selector = %v, want exactly one selector type", name, in["selector"])
				}
			}
			for _, k := range []string{"triggers", "actions"} {
				if _, ok := root[k]; !ok {
					t.Errorf("%s missing", k)
				}
			}
			for _, old := range []string{"trigger", "condition", "action"} {
				if _, ok := root[old]; ok {
					t.Errorf("legacy key %q used; use %q", old, old+"s")
				}
			}

			var refs []string
			delete(root, "blueprint") // inputs' defaults may not refer to inputs
			inputRefs(root, &refs)
			used := map[string]bool{}
			for _, r := range refs {
				if _, ok := inputs[r]; !ok {
					t.Errorf("!input %s: no such input", r)
				}
				used[r] = true
			}
			for name := range inputs {
				if !used[name] {
					t.Errorf("input %s is never used", name)
				}
			}
		})
	}
}

// The entity selectors offer exactly the kind of entity discovery creates
// (same domain and device class), so the user's pick list is not empty.
func TestBlueprintSelectorsMatchDiscovery(t *testing.T) {
	cmps := demoComponents(t)
	for _, file := range blueprintFiles(t) {
		meta := loadBlueprint(t, file)["blueprint"].(map[string]any)
		for name, v := range meta["input"].(map[string]any) {
			sel := v.(map[string]any)["selector"].(map[string]any)
			ent, ok := sel["entity"].(map[string]any)
			if !ok {
				continue
			}
			filters, _ := ent["filter"].([]any)
			if len(filters) == 0 {
				t.Errorf("%s: input %s: entity selector without a filter", file, name)
			}
			for _, f := range filters {
				f := f.(map[string]any)
				found := false
				for _, c := range cmps {
					if c.Platform == f["domain"] && c.DeviceClass == f["device_class"] && f["integration"] == "mqtt" {
						found = true
					}
				}
				if !found {
					t.Errorf("%s: input %s: filter %v matches no entity discovery creates", file, name, f)
				}
			}
		}
	}
}

// Each blueprint does what the guide says, with the documented defaults.
func TestBlueprintBehaviour(t *testing.T) {
	t.Run("close_charge_port_when_unplugged", func(t *testing.T) {
		root := loadBlueprint(t, "blueprints/close_charge_port_when_unplugged.yaml")
		inputs := root["blueprint"].(map[string]any)["input"].(map[string]any)
		checkDefault(t, inputs, "delay", map[string]any{"minutes": 2})
		checkSelector(t, inputs, "delay", "duration")
		want := map[string]any{
			"triggers": []any{map[string]any{
				"trigger": "state", "entity_id": input("plugged_in"), "from": "on", "to": "off", "for": input("delay"),
			}},
			"conditions": []any{map[string]any{"condition": "state", "entity_id": input("charge_port"), "state": "open"}},
			"actions": []any{map[string]any{
				"action": "cover.close_cover", "target": map[string]any{"entity_id": input("charge_port")},
			}},
		}
		checkKeys(t, root, want)
	})
	t.Run("notify_charge_port_left_open", func(t *testing.T) {
		root := loadBlueprint(t, "blueprints/notify_charge_port_left_open.yaml")
		inputs := root["blueprint"].(map[string]any)["input"].(map[string]any)
		checkDefault(t, inputs, "open_for", map[string]any{"minutes": 30})
		checkSelector(t, inputs, "open_for", "duration")
		checkSelector(t, inputs, "notify_action", "action")
		want := map[string]any{
			"triggers": []any{map[string]any{
				"trigger": "state", "entity_id": input("charge_port"), "to": "open", "for": input("open_for"),
			}},
			"actions": input("notify_action"),
		}
		checkKeys(t, root, want)
		vars, _ := root["variables"].(map[string]any)
		if !nonEmptyString(vars["message"]) {
			t.Error("variables.message missing: the notify action has no text")
		}
		def, _ := inputs["notify_action"].(map[string]any)["default"].([]any)
		if !strings.Contains(fmt.Sprint(def), "{{ message }}") {
			t.Errorf("the default notify action does not send the message: %v", def)
		}
	})
}

// checkKeys compares values and types: an `!input x` reference (type input)
// is not the plain string "x", which is what a lost tag leaves.
func checkKeys(t *testing.T, root, want map[string]any) {
	t.Helper()
	for k, w := range want {
		if got := root[k]; !reflect.DeepEqual(got, w) {
			t.Errorf("%s:\n got %#v\nwant %#v", k, got, w)
		}
	}
}

func checkDefault(t *testing.T, inputs map[string]any, name string, want any) {
	t.Helper()
	got := inputs[name].(map[string]any)["default"]
	if !reflect.DeepEqual(got, want) {
		t.Errorf("input %s default = %#v, want %#v", name, got, want)
	}
}

func checkSelector(t *testing.T, inputs map[string]any, name, kind string) {
	t.Helper()
	sel, _ := inputs[name].(map[string]any)["selector"].(map[string]any)
	if _, ok := sel[kind]; !ok {
		t.Errorf("input %s selector = %v, want %s", name, sel, kind)
	}
}
