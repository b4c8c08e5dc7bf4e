package status

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/bridge"
)

// The web page's numbers, reported and never asserted:
//
//	go test -run '^$' -bench Page -benchtime 20x ./status

// benchPage is a page with cars vehicles, each with everything known.
func benchPage(cars int) *Page {
	p := newPage(&fakeConnector{link: connectLink})
	full := twoCars().Vehicles[0]
	p.Bridge = func() bridge.Status {
		var s bridge.Status
		for i := range cars {
			v := full
			v.ID = fmt.Sprintf("car-%d", i)
			s.Vehicles = append(s.Vehicles, v)
		}
		return s
	}
	return p
}

// subresource is what a browser loads for a page besides the page itself: a
// script, image or frame source, or a stylesheet or icon link (data: URLs
// are in the page already).
var subresource = regexp.MustCompile(`<(?:script|img|iframe|source)\b[^>]*\bsrc="([^"]+)"|<link\b[^>]*\bhref="([^"]+)"`)

// BenchmarkPageWeight is a first load of the page with two cars: the bytes
// of the HTML and of everything it loads, as sent and gzipped (as Home
// Assistant's Ingress proxy passes it on), and the bytes of one state poll.
func BenchmarkPageWeight(b *testing.B) {
	srv := httptest.NewServer(Handler(Routes{Metrics: NewMetrics(), Page: benchPage(2)}))
	defer srv.Close()
	get := func(u string) []byte {
		resp, err := http.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
		}
		return body
	}
	var bytesLoaded, gzipped, requests, state int
	for b.Loop() {
		page := get(srv.URL + "/")
		loads := [][]byte{page}
		for _, m := range subresource.FindAllSubmatch(page, -1) {
			ref := string(m[1]) + string(m[2])
			if u, err := url.Parse(ref); err == nil && u.Scheme != "data" {
				loads = append(loads, get(srv.URL+"/"+ref))
			}
		}
		bytesLoaded, gzipped, requests = 0, 0, len(loads)
		for _, body := range loads {
			bytesLoaded += len(body)
			gzipped += gzipSize(b, body)
		}
		state = len(get(srv.URL + "/state"))
	}
	b.ReportMetric(float64(bytesLoaded), "bytes/first-load")
	b.ReportMetric(float64(gzipped), "gzip-bytes/first-load")
	b.ReportMetric(float64(requests), "requests/first-load")
	b.ReportMetric(float64(state), "bytes/state-poll")
}

func gzipSize(b *testing.B, body []byte) int {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(body); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Len()
}

// BenchmarkPageTTFB50 is the time to first byte of the page when 50 browsers
// load it at once (each iteration is 50 concurrent loads over loopback), as
// its p50 and p99.
func BenchmarkPageTTFB50(b *testing.B) {
	const concurrent = 50
	srv := httptest.NewServer(Handler(Routes{Metrics: NewMetrics(), Page: benchPage(2)}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrent}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	var ttfb []time.Duration
	load := func() error {
		var start time.Time
		var first time.Duration
		trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Since(start) }}
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		if err != nil {
			return err
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		start = time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		mu.Lock()
		ttfb = append(ttfb, first)
		mu.Unlock()
		return nil
	}
	for b.Loop() {
		var wg sync.WaitGroup
		errs := make(chan error, concurrent)
		for range concurrent {
			wg.Go(func() {
				if err := load(); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	slices.Sort(ttfb)
	at := func(q float64) float64 { return float64(ttfb[int(q*float64(len(ttfb)-1))].Microseconds()) / 1000 }
	b.ReportMetric(at(0.50), "ttfb-p50-ms")
	b.ReportMetric(at(0.99), "ttfb-p99-ms")
}
