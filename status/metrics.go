package status

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/bridge"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// Metrics is the daemon's /metrics page in Prometheus' text format (0.0.4). It
// is written here rather than with Prometheus' client library: a handful of
// counters, one histogram and some gauges read at scrape time need no registry,
// and the library with its protobuf runtime took about 4 MB of the idle daemon's
// resident memory, a quarter of its budget.
//
// Labels are endpoint names, outcomes and vehicle ids, never a URL or a token.
type Metrics struct {
	started time.Time

	mu        sync.Mutex
	calls     map[[2]string]uint64 // endpoint, outcome
	refreshes map[string]uint64    // outcome
	commands  map[string]*histogram
	bridge    func() bridge.Status // nil until the bridge exists
	// deliveries counts webhook requests by event type and outcome.
	deliveries map[[2]string]uint64
}

// commandBuckets are the door command histogram's upper bounds: commands reach
// a real car, seconds to minutes.
var commandBuckets = [...]float64{0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300}

type histogram struct {
	counts [len(commandBuckets)]uint64 // per bucket, not cumulative
	sum    float64
	count  uint64
}

// NewMetrics returns an empty page.
func NewMetrics() *Metrics {
	return &Metrics{
		started:   time.Now(),
		calls:     map[[2]string]uint64{},
		refreshes: map[string]uint64{},
		commands:  map[string]*histogram{},

		deliveries: map[[2]string]uint64{},
	}
}

// ObserveCall implements smartcar.CallObserver.
func (m *Metrics) ObserveCall(call smartcar.Call) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[[2]string{call.Endpoint, call.Outcome}]++
	switch call.Endpoint {
	case smartcar.EndpointToken:
		m.refreshes[call.Outcome]++
	case smartcar.EndpointChargePortDoor:
		h := m.commands[call.Outcome]
		if h == nil {
			h = &histogram{}
			m.commands[call.Outcome] = h
		}
		s := call.Duration.Seconds()
		if i, _ := slices.BinarySearch(commandBuckets[:], s); i < len(commandBuckets) {
			h.counts[i]++ // the first bound ≥ s
		}
		h.sum += s
		h.count++
	}
}

// WatchBridge adds the MQTT session and vehicle metrics, read from status at
// every scrape.
func (m *Metrics) WatchBridge(status func() bridge.Status) {
	m.mu.Lock()
	m.bridge = status
	m.mu.Unlock()
}

// ServeHTTP writes the page.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	m.WriteTo(w) // an error is the client gone: nothing to tell it
}

// WriteTo writes every metric family, each with its HELP and TYPE lines.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	p := &page{w: bufio.NewWriter(w)}
	m.writeCalls(p)
	m.writeDeliveries(p)
	m.writeBridge(p)
	m.writeProcess(p)
	err := p.w.Flush()
	return p.n, err
}

func (m *Metrics) writeCalls(p *page) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.family("smartcar2mqtt_smartcar_calls_total", "counter",
		"Requests to Smartcar (API and token endpoint), retries included, by endpoint and outcome.")
	for _, k := range sortedKeys(m.calls, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) }) {
		p.sample("smartcar2mqtt_smartcar_calls_total", labels("endpoint", k[0], "outcome", k[1]), float64(m.calls[k]))
	}
	p.family("smartcar2mqtt_token_refreshes_total", "counter", "Access token refreshes, by outcome (ok, OAUTH, network, …).")
	for _, k := range sortedKeys(m.refreshes, strings.Compare) {
		p.sample("smartcar2mqtt_token_refreshes_total", labels("outcome", k), float64(m.refreshes[k]))
	}
	const cmd = "smartcar2mqtt_command_duration_seconds"
	p.family(cmd, "histogram", "Time Smartcar took to answer a charge port door command.")
	for _, outcome := range sortedKeys(m.commands, strings.Compare) {
		h := m.commands[outcome]
		var cumulative uint64
		for i, bound := range commandBuckets {
			cumulative += h.counts[i]
			p.sample(cmd+"_bucket", labels("outcome", outcome, "le", formatFloat(bound)), float64(cumulative))
		}
		p.sample(cmd+"_bucket", labels("outcome", outcome, "le", "+Inf"), float64(h.count))
		p.sample(cmd+"_sum", labels("outcome", outcome), h.sum)
		p.sample(cmd+"_count", labels("outcome", outcome), float64(h.count))
	}
}

func (m *Metrics) writeBridge(p *page) {
	m.mu.Lock()
	status := m.bridge
	m.mu.Unlock()
	if status == nil {
		return
	}
	s := status()
	p.single("smartcar2mqtt_mqtt_connected", "gauge", "1 while the MQTT session is up.", boolValue(s.Connected))
	p.single("smartcar2mqtt_mqtt_connects_total", "counter", "MQTT sessions established; more than one means reconnects.", float64(s.Connects))
	p.single("smartcar2mqtt_mqtt_connections_lost_total", "counter", "MQTT sessions lost.", float64(s.ConnectionsLost))
	p.family("smartcar2mqtt_vehicle_available", "gauge", "1 while the vehicle can be served (its availability topic says online).")
	for _, v := range s.Vehicles {
		if !v.Unbridged { // no availability topic to mirror
			p.sample("smartcar2mqtt_vehicle_available", labels("vehicle", v.ID), boolValue(v.Available))
		}
	}
	p.family("smartcar2mqtt_state_age_seconds", "gauge", "Age of the door state published retained: time since it was last learned from the car.")
	for _, v := range s.Vehicles {
		if !v.KnownAt.IsZero() {
			p.sample("smartcar2mqtt_state_age_seconds", labels("vehicle", v.ID), time.Since(v.KnownAt).Seconds())
		}
	}
}

// writeProcess writes the usual process and Go runtime metrics, under the names
// Prometheus' own client uses, so existing dashboards find them.
func (m *Metrics) writeProcess(p *page) {
	p.single("go_goroutines", "gauge", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine()))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.single("go_memstats_heap_alloc_bytes", "gauge", "Number of heap bytes allocated and currently in use.", float64(ms.HeapAlloc))
	p.single("go_memstats_sys_bytes", "gauge", "Number of bytes obtained from system.", float64(ms.Sys))
	p.single("go_gc_cycles_total", "counter", "Completed GC cycles.", float64(ms.NumGC))
	p.family("go_info", "gauge", "Information about the Go environment.")
	p.sample("go_info", labels("version", runtime.Version()), 1)

	p.single("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", float64(m.started.UnixNano())/1e9)
	// Linux only, from /proc; elsewhere these are left out rather than made up.
	if rss, ok := residentBytes(); ok {
		p.single("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss)
	}
	if cpu, ok := cpuSeconds(); ok {
		p.single("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu)
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		p.single("process_open_fds", "gauge", "Number of open file descriptors.", float64(len(fds)))
	}
}

// residentBytes reads the second field of /proc/self/statm (pages).
func residentBytes() (float64, bool) {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return float64(pages) * float64(os.Getpagesize()), true
}

// cpuSeconds reads utime and stime from /proc/self/stat, in clock ticks of
// 1/100 s (USER_HZ, fixed at 100 for /proc on Linux).
func cpuSeconds() (float64, bool) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	// The command name in field 2 may hold spaces: count from its closing ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(data[i+1:]))
	// After ')' come state (field 3) … utime (14) and stime (15).
	if len(fields) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseUint(fields[11], 10, 64)
	stime, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return float64(utime+stime) / 100, true
}

// page writes the text format and counts what it wrote.
type page struct {
	w *bufio.Writer
	n int64
}

func (p *page) family(name, typ, help string) {
	k, _ := fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, helpEscaper.Replace(help), name, typ)
	p.n += int64(k)
}

func (p *page) sample(name, labels string, value float64) {
	k, _ := fmt.Fprintf(p.w, "%s%s %s\n", name, labels, formatFloat(value))
	p.n += int64(k)
}

// single writes a family of one unlabelled sample.
func (p *page) single(name, typ, help string, v float64) {
	p.family(name, typ, help)
	p.sample(name, "", v)
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// labels formats name/value pairs as {a="1",b="2"}.
func labels(pairs ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(pairs[i])
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(pairs[i+1]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func sortedKeys[K comparable, V any](m map[K]V, cmp func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp)
	return keys
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
