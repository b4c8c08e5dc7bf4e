package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// blackhole accepts connections and never answers, as Smartcar looks from a
// home server whose router is not up yet; it counts the connections, which are
// the calls the daemon tried.
func blackhole(b *testing.B) (url string, tried *atomic.Int64) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tried = &atomic.Int64{}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			tried.Add(1)
			held = append(held, c)
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		<-done
	})
	return "http://" + ln.Addr().String(), tried
}

// ageFleetCache makes the vehicle cache in dataDir look listed age ago.
func ageFleetCache(b *testing.B, dataDir string, age time.Duration) {
	b.Helper()
	path := filepath.Join(dataDir, smartcar.FleetFile)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		b.Fatal(err)
	}
	doc["fetched_at"] = time.Now().Add(-age).UTC().Format(time.RFC3339Nano)
	if data, err = json.Marshal(doc); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDaemonColdStartOffline is the start after a power cut that brings the
// home server up before the router: Smartcar out of reach (connections accepted,
// never answered) and a vehicle cache a week old. Reported: the time from the
// process starting to its discovery config reaching a subscriber (target ≤ 300
// ms), reached while every Smartcar call hangs, so nothing on the way waits for
// one; and the calls tried before it arrived: the overdue daily listing, started
// once the bridge has announced, in parallel and never awaited.
func BenchmarkDaemonColdStartOffline(b *testing.B) {
	m := itest.NewMosquitto(b, "tcp", "")
	w := newPerfWorld(b, smartcarsim.Options{})
	warm := w.start(m.URL(), "") // fills DATA_DIR: tokens are memory-only in v3, the vehicles are kept
	w.waitReady(warm)
	warm.stop(b)
	hole, tried := blackhole(b)
	w.srv.URL = hole // every later start finds Smartcar out of reach

	configTopic := discovery.ConfigTopic("homeassistant", smartcarsim.TeslaID)
	var took []time.Duration
	var before int64
	for b.Loop() {
		ageFleetCache(b, w.dataDir, 7*24*time.Hour)
		live := make(chan time.Time, 1)
		ha := watcher(b, m.URL(), "ha")
		if tok := ha.Subscribe(configTopic, 1, func(_ mqtt.Client, msg mqtt.Message) {
			if !msg.Retained() && len(msg.Payload()) > 0 {
				select {
				case live <- time.Now():
				default:
				}
			}
		}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("subscribe: %v", tok.Error())
		}
		start := tried.Load()
		d := w.start(m.URL(), "")
		select {
		case at := <-live:
			took = append(took, at.Sub(d.start))
			before += tried.Load() - start
		case <-d.exited:
			b.Fatalf("the daemon exited:\n%s", d.stderr.Text())
		case <-time.After(20 * time.Second):
			b.Fatalf("no discovery within 20 s with Smartcar out of reach:\n%s", d.stderr.Text())
		}
		d.stop(b)
		ha.Disconnect(50)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "ms-to-discovery")
	b.ReportMetric(float64(took[len(took)-1])/float64(time.Millisecond), "max-ms-to-discovery")
	b.ReportMetric(float64(before)/float64(len(took)), "smartcar-calls-tried-before-discovery")
}
