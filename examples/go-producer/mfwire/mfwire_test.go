package mfwire

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"metricsflow.example/goproducer/seriesid"
)

func vectorDir() string {
	if dir := os.Getenv("MF_VECTORS"); dir != "" {
		return dir
	}
	return filepath.Join("..", "..", "..", "proto", "vectors")
}

func load(t *testing.T, name string, into any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(vectorDir(), name))
	if err != nil {
		t.Fatalf("read vectors: %v", err)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
}

func floatsFromHex(t *testing.T, hexes []string) []float64 {
	t.Helper()
	out := make([]float64, len(hexes))
	for i, h := range hexes {
		bits, err := strconv.ParseUint(h, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = math.Float64frombits(bits)
	}
	return out
}

func sameBits(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return false
		}
	}
	return true
}

type writeVectors struct {
	Cases []struct {
		Name   string `json:"name"`
		Tenant string `json:"tenant"`
		Series []struct {
			Labels       [][2]string `json:"labels"`
			Kind         int32       `json:"kind"`
			Encoding     string      `json:"encoding"`
			TimestampsMs []int64     `json:"timestamps_ms"`
			ValuesHex    []string    `json:"values_f64_hex"`
			SeriesID     string      `json:"series_id"`
		} `json:"series"`
		BytesBase64 string `json:"bytes_base64"`
		BytesHex    string `json:"bytes_hex"`
	} `json:"cases"`
}

func TestWriteRequestVectors(t *testing.T) {
	var v writeVectors
	load(t, "write_request.json", &v)
	if len(v.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range v.Cases {
		t.Run(c.Name, func(t *testing.T) {
			want, err := base64.StdEncoding.DecodeString(c.BytesBase64)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(want) != c.BytesHex {
				t.Fatal("bytes_base64 and bytes_hex disagree")
			}
			req := WriteRequest{Tenant: c.Tenant}
			tenant := c.Tenant
			if tenant == "" {
				tenant = "default"
			}
			for _, s := range c.Series {
				out := Series{Kind: Kind(s.Kind), Packed: s.Encoding == "packed",
					TimestampsMs: s.TimestampsMs, Values: floatsFromHex(t, s.ValuesHex)}
				labels := map[string]string{}
				for _, kv := range s.Labels {
					out.Labels = append(out.Labels, Label{Name: kv[0], Value: kv[1]})
					labels[kv[0]] = kv[1]
				}
				req.Series = append(req.Series, out)
				if got := strconv.FormatUint(seriesid.SeriesID(tenant, labels), 10); got != s.SeriesID {
					t.Errorf("series id %s, want %s", got, s.SeriesID)
				}
			}
			if got := req.Marshal(); hex.EncodeToString(got) != c.BytesHex {
				t.Errorf("WriteRequest bytes\n got %x\nwant %s", got, c.BytesHex)
			}
			// Appending to a non-empty buffer must not disturb it.
			prefix := []byte("xyz")
			if got := req.AppendMarshal(prefix); string(got[:3]) != "xyz" || hex.EncodeToString(got[3:]) != c.BytesHex {
				t.Error("AppendMarshal into a non-empty buffer differs")
			}
		})
	}
}

type batchVectors struct {
	Cases []struct {
		Name          string   `json:"name"`
		BytesBase64   string   `json:"bytes_base64"`
		FormatVersion uint32   `json:"format_version"`
		SeriesIDs     []string `json:"series_ids"`
		RunLengths    []uint32 `json:"run_lengths"`
		TimestampsMs  []int64  `json:"timestamps_ms"`
		ValuesHex     []string `json:"values_f64_hex"`
		ProducedAtMs  int64    `json:"produced_at_ms"`
	} `json:"cases"`
	Invalid []struct {
		Name        string `json:"name"`
		BytesBase64 string `json:"bytes_base64"`
		ErrorReason string `json:"error_reason"`
	} `json:"invalid"`
}

func TestPointBatchVectors(t *testing.T) {
	var v batchVectors
	load(t, "point_batch.json", &v)
	for _, c := range v.Cases {
		t.Run(c.Name, func(t *testing.T) {
			data, err := base64.StdEncoding.DecodeString(c.BytesBase64)
			if err != nil {
				t.Fatal(err)
			}
			b, err := DecodePointBatch(data)
			if err != nil {
				t.Fatal(err)
			}
			if b.FormatVersion != c.FormatVersion || b.ProducedAtMs != c.ProducedAtMs {
				t.Errorf("header %d/%d, want %d/%d", b.FormatVersion, b.ProducedAtMs, c.FormatVersion, c.ProducedAtMs)
			}
			if len(b.SeriesIDs) != len(c.SeriesIDs) {
				t.Fatalf("%d runs, want %d", len(b.SeriesIDs), len(c.SeriesIDs))
			}
			for i, id := range b.SeriesIDs {
				if strconv.FormatUint(id, 10) != c.SeriesIDs[i] || b.RunLengths[i] != c.RunLengths[i] {
					t.Errorf("run %d: %d×%d, want %s×%d", i, id, b.RunLengths[i], c.SeriesIDs[i], c.RunLengths[i])
				}
			}
			if len(b.TimestampsMs) != len(c.TimestampsMs) {
				t.Fatalf("%d points, want %d", len(b.TimestampsMs), len(c.TimestampsMs))
			}
			for i := range b.TimestampsMs {
				if b.TimestampsMs[i] != c.TimestampsMs[i] {
					t.Errorf("timestamp %d: %d, want %d", i, b.TimestampsMs[i], c.TimestampsMs[i])
				}
			}
			if !sameBits(b.Values, floatsFromHex(t, c.ValuesHex)) {
				t.Errorf("values %v differ from %v", b.Values, c.ValuesHex)
			}
		})
	}
	for _, c := range v.Invalid {
		t.Run("invalid: "+c.Name, func(t *testing.T) {
			data, err := base64.StdEncoding.DecodeString(c.BytesBase64)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodePointBatch(data); !errors.Is(err, ErrBadPointBatch) || c.ErrorReason != "bad_point_batch" {
				t.Errorf("got error %v, want %s", err, c.ErrorReason)
			}
		})
	}
}
