package main

import (
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

// BenchmarkDaemonShutdown is `docker stop` of the daemon with the embedded broker
// while MQTT clients connect and leave without pause, as Home Assistant reconnecting
// and other clients might: the time from SIGTERM to the process's exit, and its exit
// code, which must be 0. A stop taking over shutdownHang counts as a hang: the
// process is killed, and the benchmark fails. It reports the slowest and the
// median stop, and the hangs; it asserts nothing else about time.
//
//	go test -run '^$' -bench DaemonShutdown -benchtime 20x .
func BenchmarkDaemonShutdown(b *testing.B) {
	const shutdownHang = 10 * time.Second
	w := newPerfWorld(b, smartcarsim.Options{})
	var took []time.Duration
	hangs := 0
	for b.Loop() {
		addr := freeAddr(b)
		d := w.start("", addr)
		// Up when the bridge says it reached the embedded broker: each run's own log,
		// since a warm start may not call Smartcar at all.
		d.stderr.WaitLine(b, "connected to the MQTT broker", 30*time.Second)

		stop := make(chan struct{})
		active, wait := mqttChurn(b, "tcp://"+addr, stop)
		select {
		case <-active:
		case <-d.exited:
			b.Fatalf("the daemon exited:\n%s", d.stderr.Text())
		case <-time.After(20 * time.Second):
			b.Fatalf("no MQTT client connected to the embedded broker within 20 s:\n%s", d.stderr.Text())
		}

		sent := time.Now()
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			b.Fatalf("SIGTERM: %v", err)
		}
		select {
		case <-d.exited:
			took = append(took, time.Since(sent))
			if code := d.cmd.ProcessState.ExitCode(); code != 0 {
				b.Errorf("exit code %d after SIGTERM, want 0:\n%s", code, d.stderr.Text())
			}
		case <-time.After(shutdownHang):
			took = append(took, time.Since(sent))
			hangs++
			d.cmd.Process.Kill()
			<-d.exited
			b.Logf("the daemon did not exit within %s of SIGTERM:\n%s", shutdownHang, d.stderr.Text())
		}
		close(stop)
		wait()
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)-1])/float64(time.Millisecond), "max-shutdown-ms")
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "p50-shutdown-ms")
	b.ReportMetric(float64(hangs), "hangs")
	if hangs > 0 {
		b.Errorf("%d of %d stops took over %s", hangs, len(took), shutdownHang)
	}
}

// mqttChurn keeps MQTT 3.1.1 clients (paho, as Home Assistant's) coming and going
// at url until stop is closed: two stay connected through the stop, four connect
// and leave over and over, some waiting for their DISCONNECT to go out, some not,
// so that leaves race the broker's own close. active is closed
// once the staying clients and a churner are connected; wait waits for all to end.
func mqttChurn(b *testing.B, url string, stop <-chan struct{}) (active <-chan struct{}, wait func()) {
	const stayers, churners = 2, 4
	ready := make(chan struct{}, stayers+churners)
	up := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for range stayers + 1 {
			select {
			case <-ready:
			case <-stop:
				return
			}
		}
		close(up)
	})
	connect := func(id string) mqtt.Client {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(2 * time.Second))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			return nil
		}
		return c
	}
	for i := range stayers {
		wg.Go(func() {
			c := connect(fmt.Sprintf("shutdown-stay-%d-%d", i, time.Now().UnixNano()))
			if c == nil {
				return
			}
			ready <- struct{}{}
			<-stop
			c.Disconnect(0)
		})
	}
	for i := range churners {
		wg.Go(func() {
			signalled := false
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				c := connect(fmt.Sprintf("shutdown-churn-%d", i))
				if c == nil {
					<-stop // the broker is gone: wait for the end rather than spin
					return
				}
				if !signalled {
					ready <- struct{}{}
					signalled = true
				}
				c.Disconnect(uint(n % 2)) // 0 or 1 ms for the DISCONNECT to go out
			}
		})
	}
	return up, wg.Wait
}
