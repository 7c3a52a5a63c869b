// Package mfwire hand-encodes the metricsflow.v1 messages of proto/metricsflow.proto
// with google.golang.org/protobuf/encoding/protowire, so no generated code is needed.
//
// Marshal writes fields in field-number order and omits proto3 defaults (empty
// strings, zero kind, empty repeated fields), which is what every official
// protobuf encoder does: the output is byte-for-byte the vectors in
// proto/vectors/write_request.json.
package mfwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Kind is metricsflow.v1.MetricKind.
type Kind int32

const (
	KindUnspecified  Kind = 0
	KindGauge        Kind = 1
	KindCounter      Kind = 2
	KindDistribution Kind = 3
)

// Label is metricsflow.v1.Label.
type Label struct {
	Name  string
	Value string
}

// Series is metricsflow.v1.Series. Samples are written as the little-endian
// columns timestamps_ms_le/values_le (fields 4, 5), or as the packed fields
// timestamps_ms/values (2, 3) when Packed is set.
type Series struct {
	Labels       []Label // must include __name__; written in this order
	TimestampsMs []int64 // ms since the Unix epoch
	Values       []float64
	Kind         Kind
	Packed       bool
}

// WriteRequest is metricsflow.v1.WriteRequest.
type WriteRequest struct {
	Series []Series
	Tenant string // read by the mf.ingest consumer; empty means "default"
}

// Marshal encodes the request.
func (r *WriteRequest) Marshal() []byte { return r.AppendMarshal(nil) }

// AppendMarshal appends the encoded request to dst.
func (r *WriteRequest) AppendMarshal(dst []byte) []byte {
	var scratch []byte
	for i := range r.Series {
		scratch = r.Series[i].AppendMarshal(scratch[:0])
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = protowire.AppendBytes(dst, scratch)
	}
	if r.Tenant != "" {
		dst = protowire.AppendTag(dst, 2, protowire.BytesType)
		dst = protowire.AppendString(dst, r.Tenant)
	}
	return dst
}

// AppendMarshal appends the encoded Series (without its own tag and length) to dst.
func (s *Series) AppendMarshal(dst []byte) []byte {
	for _, l := range s.Labels {
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(labelSize(l)))
		if l.Name != "" {
			dst = protowire.AppendTag(dst, 1, protowire.BytesType)
			dst = protowire.AppendString(dst, l.Name)
		}
		if l.Value != "" {
			dst = protowire.AppendTag(dst, 2, protowire.BytesType)
			dst = protowire.AppendString(dst, l.Value)
		}
	}
	if s.Packed {
		if len(s.TimestampsMs) > 0 {
			n := 0
			for _, t := range s.TimestampsMs {
				n += protowire.SizeVarint(uint64(t)) // int64: negative values take 10 bytes
			}
			dst = protowire.AppendTag(dst, 2, protowire.BytesType)
			dst = protowire.AppendVarint(dst, uint64(n))
			for _, t := range s.TimestampsMs {
				dst = protowire.AppendVarint(dst, uint64(t))
			}
		}
		if len(s.Values) > 0 {
			dst = protowire.AppendTag(dst, 3, protowire.BytesType)
			dst = protowire.AppendVarint(dst, uint64(8*len(s.Values)))
			for _, v := range s.Values {
				dst = protowire.AppendFixed64(dst, math.Float64bits(v))
			}
		}
	} else {
		if len(s.TimestampsMs) > 0 {
			dst = protowire.AppendTag(dst, 4, protowire.BytesType)
			dst = protowire.AppendVarint(dst, uint64(8*len(s.TimestampsMs)))
			for _, t := range s.TimestampsMs {
				dst = binary.LittleEndian.AppendUint64(dst, uint64(t))
			}
		}
		if len(s.Values) > 0 {
			dst = protowire.AppendTag(dst, 5, protowire.BytesType)
			dst = protowire.AppendVarint(dst, uint64(8*len(s.Values)))
			for _, v := range s.Values {
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
			}
		}
	}
	if s.Kind != KindUnspecified {
		dst = protowire.AppendTag(dst, 6, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(int64(s.Kind))) // enums are int32 varints
	}
	return dst
}

func labelSize(l Label) int {
	n := 0
	if l.Name != "" {
		n += protowire.SizeTag(1) + protowire.SizeBytes(len(l.Name))
	}
	if l.Value != "" {
		n += protowire.SizeTag(2) + protowire.SizeBytes(len(l.Value))
	}
	return n
}

// PointBatch is a decoded metricsflow.v1.PointBatch (the value of mf.points).
type PointBatch struct {
	FormatVersion uint32
	SeriesIDs     []uint64 // one per run
	RunLengths    []uint32 // points per run
	TimestampsMs  []int64  // one per point
	Values        []float64
	ProducedAtMs  int64
}

// ErrBadPointBatch is wrapped by every DecodePointBatch error.
var ErrBadPointBatch = errors.New("bad_point_batch")

// DecodePointBatch parses and checks one mf.points value, like metricsflow/pointbatch.py.
func DecodePointBatch(b []byte) (PointBatch, error) {
	var pb PointBatch
	var cols [4][]byte // series_ids, run_lengths, timestamps_ms, values
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return pb, fmt.Errorf("%w: %v", ErrBadPointBatch, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return pb, fmt.Errorf("%w: %v", ErrBadPointBatch, protowire.ParseError(n))
			}
			pb.FormatVersion, b = uint32(v), b[n:]
		case num >= 2 && num <= 5 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return pb, fmt.Errorf("%w: %v", ErrBadPointBatch, protowire.ParseError(n))
			}
			cols[num-2], b = v, b[n:]
		case num == 6 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return pb, fmt.Errorf("%w: %v", ErrBadPointBatch, protowire.ParseError(n))
			}
			pb.ProducedAtMs, b = int64(v), b[n:]
		default: // unknown field: skip, as protobuf does
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return pb, fmt.Errorf("%w: %v", ErrBadPointBatch, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	if pb.FormatVersion != 1 {
		return pb, fmt.Errorf("%w: unknown PointBatch format_version %d", ErrBadPointBatch, pb.FormatVersion)
	}
	if len(cols[0])%8 != 0 || len(cols[1])%4 != 0 || len(cols[2])%8 != 0 || len(cols[3])%8 != 0 ||
		len(cols[0])/8 != len(cols[1])/4 || len(cols[2]) != len(cols[3]) {
		return pb, fmt.Errorf("%w: column sizes do not fit: %d %d %d %d", ErrBadPointBatch,
			len(cols[0]), len(cols[1]), len(cols[2]), len(cols[3]))
	}
	var total uint64
	for i := 0; i < len(cols[0]); i += 8 {
		pb.SeriesIDs = append(pb.SeriesIDs, binary.LittleEndian.Uint64(cols[0][i:]))
		n := binary.LittleEndian.Uint32(cols[1][i/2:])
		pb.RunLengths = append(pb.RunLengths, n)
		total += uint64(n)
	}
	if total != uint64(len(cols[2])/8) {
		return pb, fmt.Errorf("%w: runs add up to %d points, columns hold %d", ErrBadPointBatch, total, len(cols[2])/8)
	}
	for i := 0; i < len(cols[2]); i += 8 {
		pb.TimestampsMs = append(pb.TimestampsMs, int64(binary.LittleEndian.Uint64(cols[2][i:])))
		pb.Values = append(pb.Values, math.Float64frombits(binary.LittleEndian.Uint64(cols[3][i:])))
	}
	return pb, nil
}
