// Package seriesid computes metricsflow series identity: the canonical bytes of
// (tenant, labels), the 64-bit series id and the owning partition.
//
// The canonical form (format version 1, see metricsflow/series_id.py):
//
//	uvarint(len(tenant)) tenant
//	for each label sorted by name (bytewise UTF-8):
//	    uvarint(len(name)) name uvarint(len(value)) value
//
// Labels with an empty value are dropped first. series_id = XXH3-64 (seed 0) of
// those bytes, unsigned; partition = series_id mod partitions, unsigned.
// Strings are hashed as the bytes given: no Unicode normalisation.
package seriesid

import (
	"encoding/binary"
	"sort"

	"github.com/zeebo/xxh3"
)

// CanonicalFormatVersion is the version of the canonical form implemented here.
const CanonicalFormatVersion = 1

// AppendCanonical appends the canonical bytes of (tenant, labels) to dst.
func AppendCanonical(dst []byte, tenant string, labels map[string]string) []byte {
	names := make([]string, 0, len(labels))
	for name, value := range labels {
		if value != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names) // Go compares strings bytewise: the UTF-8 order the spec asks for
	dst = appendString(dst, tenant)
	for _, name := range names {
		dst = appendString(dst, name)
		dst = appendString(dst, labels[name])
	}
	return dst
}

// CanonicalBytes returns the canonical bytes of (tenant, labels).
func CanonicalBytes(tenant string, labels map[string]string) []byte {
	return AppendCanonical(nil, tenant, labels)
}

// SeriesID is the stable unsigned 64-bit id of a series.
func SeriesID(tenant string, labels map[string]string) uint64 {
	return xxh3.Hash(CanonicalBytes(tenant, labels))
}

// Partition is the partition (of `partitions`) that owns a series.
func Partition(id uint64, partitions int) int {
	if partitions <= 0 {
		panic("seriesid: partitions must be positive")
	}
	return int(id % uint64(partitions))
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}
