package seriesid

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

type seriesVectors struct {
	CanonicalFormatVersion int `json:"canonical_format_version"`
	Cases                  []struct {
		Name         string         `json:"name"`
		Tenant       string         `json:"tenant"`
		Labels       [][2]string    `json:"labels"`
		CanonicalHex string         `json:"canonical_hex"`
		SeriesID     string         `json:"series_id"`
		SeriesIDHex  string         `json:"series_id_hex"`
		Partitions   map[string]int `json:"partitions"`
		Group        string         `json:"group"`
	} `json:"cases"`
}

// vectorDir is proto/vectors of the metricsflow repository; MF_VECTORS overrides it.
func vectorDir() string {
	if dir := os.Getenv("MF_VECTORS"); dir != "" {
		return dir
	}
	return filepath.Join("..", "..", "..", "proto", "vectors")
}

func TestSeriesIDVectors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(vectorDir(), "series_id.json"))
	if err != nil {
		t.Fatalf("read vectors: %v", err)
	}
	var v seriesVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("parse vectors: %v", err)
	}
	if v.CanonicalFormatVersion != CanonicalFormatVersion {
		t.Fatalf("vectors are for canonical format %d, this code implements %d", v.CanonicalFormatVersion,
			CanonicalFormatVersion)
	}
	if len(v.Cases) < 30 {
		t.Fatalf("only %d cases", len(v.Cases))
	}
	groups := map[string]uint64{}
	for _, c := range v.Cases {
		t.Run(c.Name, func(t *testing.T) {
			labels := make(map[string]string, len(c.Labels))
			for _, kv := range c.Labels {
				labels[kv[0]] = kv[1]
			}
			if got := hex.EncodeToString(CanonicalBytes(c.Tenant, labels)); got != c.CanonicalHex {
				t.Errorf("canonical bytes\n got %s\nwant %s", got, c.CanonicalHex)
			}
			want, err := strconv.ParseUint(c.SeriesID, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			id := SeriesID(c.Tenant, labels)
			if id != want {
				t.Errorf("series id %d, want %d", id, want)
			}
			if got := strconv.FormatUint(id, 16); leftPad(got) != c.SeriesIDHex {
				t.Errorf("series id hex %s, want %s", leftPad(got), c.SeriesIDHex)
			}
			for p, wantPart := range c.Partitions {
				n, _ := strconv.Atoi(p)
				if got := Partition(id, n); got != wantPart {
					t.Errorf("partition of %d: %d, want %d", n, got, wantPart)
				}
			}
			if c.Group != "" {
				if prev, ok := groups[c.Group]; ok && prev != id {
					t.Errorf("group %q has two ids: %d and %d", c.Group, prev, id)
				}
				groups[c.Group] = id
			}
		})
	}
}

func leftPad(h string) string {
	for len(h) < 16 {
		h = "0" + h
	}
	return h
}
