// Command goproducer writes metricsflow.v1.WriteRequest messages straight to
// Kafka (topic mf.ingest), the way any non-Python producer can. The mf.ingest
// consumer in the metricsflow workers validates them, computes the series ids
// and moves the points into mf.points / mf.series.
//
//	go run . -brokers 127.0.0.1:9092 -topic mf.ingest -tenant default -series 10 -points 100
//
// It prints what it sent as one JSON line on stdout (labels, series id,
// timestamps and values of every series), so a test can check the stored data.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"metricsflow.example/goproducer/mfwire"
	"metricsflow.example/goproducer/seriesid"
)

type config struct {
	brokers     string
	topic       string
	tenant      string
	metric      string
	series      int
	points      int
	intervalMs  int64
	startMs     int64
	batch       int
	maxPoints   int
	packed      bool
	compression string
	timeout     time.Duration
}

type sentSeries struct {
	Labels       map[string]string `json:"labels"`
	SeriesID     string            `json:"series_id"`
	SeriesIDHex  string            `json:"series_id_hex"`
	TimestampsMs []int64           `json:"timestamps_ms"`
	Values       []float64         `json:"values"`
}

type report struct {
	Brokers   string       `json:"brokers"`
	Topic     string       `json:"topic"`
	Tenant    string       `json:"tenant"`
	Messages  int          `json:"messages"`
	Bytes     int          `json:"bytes"`
	Points    int          `json:"points"`
	ElapsedMs int64        `json:"elapsed_ms"`
	Series    []sentSeries `json:"series"`
}

func main() {
	var c config
	flag.StringVar(&c.brokers, "brokers", "127.0.0.1:9092", "comma-separated Kafka bootstrap brokers")
	flag.StringVar(&c.topic, "topic", "mf.ingest", "topic the metricsflow workers consume WriteRequests from")
	flag.StringVar(&c.tenant, "tenant", "default", "WriteRequest.tenant (empty: the consumer uses \"default\")")
	flag.StringVar(&c.metric, "metric", "go_producer_demo", "metric name (__name__) of every series")
	flag.IntVar(&c.series, "series", 10, "number of series (label series=\"0\"..)")
	flag.IntVar(&c.points, "points", 100, "points per series")
	flag.Int64Var(&c.intervalMs, "interval-ms", 10_000, "milliseconds between two points of a series")
	flag.Int64Var(&c.startMs, "start-ms", 0, "timestamp of the first point (default: now minus points×interval)")
	flag.IntVar(&c.batch, "batch", 1000, "points per series per chunk (a message holds chunks of several series)")
	flag.IntVar(&c.maxPoints, "max-points", 20_000, "points per Kafka message at most (16 bytes each; Kafka's default limit is 1 MB)")
	flag.BoolVar(&c.packed, "packed", false, "write packed timestamps_ms/values instead of little-endian columns")
	flag.StringVar(&c.compression, "compression", "none", "Kafka batch compression: none, gzip, snappy, lz4, zstd")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Second, "give up if Kafka has not acknowledged everything by then")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "goproducer:", err)
		os.Exit(1)
	}
}

// value of point i of series s: not a round number, so a lossy float path shows.
func value(s, i int) float64 { return float64(s*1000+i) + 0.1 }

func build(c config) ([]mfwire.Series, []sentSeries) {
	start := c.startMs
	if start == 0 {
		start = time.Now().UnixMilli() - int64(c.points)*c.intervalMs
	}
	kind := mfwire.KindGauge
	all := make([]mfwire.Series, 0, c.series)
	sent := make([]sentSeries, 0, c.series)
	for s := 0; s < c.series; s++ {
		labels := map[string]string{"__name__": c.metric, "series": strconv.Itoa(s), "producer": "go"}
		ts := make([]int64, c.points)
		vals := make([]float64, c.points)
		for i := range ts {
			ts[i] = start + int64(i)*c.intervalMs
			vals[i] = value(s, i)
		}
		tenant := c.tenant
		if tenant == "" {
			tenant = "default"
		}
		id := seriesid.SeriesID(tenant, labels)
		all = append(all, mfwire.Series{Labels: sortedLabels(labels), TimestampsMs: ts, Values: vals, Kind: kind,
			Packed: c.packed})
		sent = append(sent, sentSeries{Labels: labels, SeriesID: strconv.FormatUint(id, 10),
			SeriesIDHex: fmt.Sprintf("%016x", id), TimestampsMs: ts, Values: vals})
	}
	return all, sent
}

func sortedLabels(m map[string]string) []mfwire.Label {
	out := make([]mfwire.Label, 0, len(m))
	for k, v := range m {
		out = append(out, mfwire.Label{Name: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// messages slices every series into chunks of `batch` points, in time order, and packs
// the chunks into WriteRequests of at most `max-points` points (at least one chunk each).
func messages(c config, all []mfwire.Series) [][]byte {
	var out [][]byte
	req := mfwire.WriteRequest{Tenant: c.tenant}
	points := 0
	for from := 0; from < c.points; from += c.batch {
		to := min(from+c.batch, c.points)
		for _, s := range all {
			if points > 0 && points+(to-from) > c.maxPoints {
				out = append(out, req.Marshal())
				req.Series, points = nil, 0
			}
			part := s
			part.TimestampsMs, part.Values = s.TimestampsMs[from:to], s.Values[from:to]
			req.Series = append(req.Series, part)
			points += to - from
		}
	}
	if points > 0 {
		out = append(out, req.Marshal())
	}
	return out
}

func codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown compression %q", name)
}

func run(c config) error {
	if c.series < 1 || c.points < 1 || c.batch < 1 || c.maxPoints < 1 {
		return fmt.Errorf("-series, -points, -batch and -max-points must be positive")
	}
	comp, err := codec(c.compression)
	if err != nil {
		return err
	}
	all, sent := build(c)
	msgs := messages(c, all)
	started := time.Now()
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(c.brokers, ",")...),
		kgo.DefaultProduceTopic(c.topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // acknowledged means durable, as for the collectors
		kgo.ProducerBatchCompression(comp),
		kgo.ProduceRequestTimeout(c.timeout),
		kgo.RecordDeliveryTimeout(c.timeout),
	)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	records := make([]*kgo.Record, len(msgs))
	size := 0
	for i, m := range msgs {
		// Any key works: the workers re-partition by series id. The tenant keeps one tenant's data ordered.
		records[i] = &kgo.Record{Key: []byte(c.tenant), Value: m}
		size += len(m)
	}
	if err := client.ProduceSync(ctx, records...).FirstErr(); err != nil {
		return fmt.Errorf("produce to %s: %w", c.topic, err)
	}
	rep := report{Brokers: c.brokers, Topic: c.topic, Tenant: c.tenant, Messages: len(msgs), Bytes: size,
		Points: c.series * c.points, ElapsedMs: time.Since(started).Milliseconds(), Series: sent}
	line, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	fmt.Println(string(line))
	return nil
}
