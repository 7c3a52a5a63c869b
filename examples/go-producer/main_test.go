package main

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// countPoints reads back a WriteRequest: series count and points (8 bytes per timestamps_ms_le element).
func countPoints(t *testing.T, msg []byte) (series, points int) {
	t.Helper()
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			t.Fatal(protowire.ParseError(n))
		}
		msg = msg[n:]
		if num != 1 || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, msg)
			msg = msg[n:]
			continue
		}
		s, n := protowire.ConsumeBytes(msg)
		msg = msg[n:]
		series++
		for len(s) > 0 {
			fnum, ftyp, m := protowire.ConsumeTag(s)
			s = s[m:]
			if fnum == 4 {
				b, m := protowire.ConsumeBytes(s)
				points += len(b) / 8
				s = s[m:]
				continue
			}
			s = s[protowire.ConsumeFieldValue(fnum, ftyp, s):]
		}
	}
	return series, points
}

func TestMessagesRespectMaxPoints(t *testing.T) {
	for _, tc := range []struct{ series, points, batch, max, wantMsgs int }{
		{10, 100, 25, 250, 4},
		{10, 100, 1000, 20_000, 1},
		{3, 10, 4, 5, 8},   // chunks of 4 go alone; two chunks of 2 share a message
		{1, 5, 10, 1, 1},   // one chunk larger than max-points still goes, alone
		{7, 33, 10, 45, 6}, // 21 chunks of 10 (4 a message), then 7 chunks of 3 fill the 6th
	} {
		c := config{tenant: "t", metric: "m", series: tc.series, points: tc.points, batch: tc.batch,
			maxPoints: tc.max, intervalMs: 1000, startMs: 1}
		all, _ := build(c)
		msgs := messages(c, all)
		total := 0
		for _, m := range msgs {
			_, p := countPoints(t, m)
			if p > tc.max && p > tc.batch {
				t.Errorf("%+v: message of %d points", tc, p)
			}
			total += p
		}
		if total != tc.series*tc.points {
			t.Errorf("%+v: %d points in messages, want %d", tc, total, tc.series*tc.points)
		}
		if tc.wantMsgs > 0 && len(msgs) != tc.wantMsgs {
			t.Errorf("%+v: %d messages, want %d", tc, len(msgs), tc.wantMsgs)
		}
	}
}
