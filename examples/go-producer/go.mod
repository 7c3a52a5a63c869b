module metricsflow.example/goproducer

go 1.22

require (
	github.com/twmb/franz-go v1.18.1
	github.com/zeebo/xxh3 v1.1.0
	google.golang.org/protobuf v1.36.6
)

require (
	github.com/klauspost/compress v1.17.11 // indirect
	github.com/klauspost/cpuid/v2 v2.2.10 // indirect
	github.com/pierrec/lz4/v4 v4.1.22 // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.9.0 // indirect
	golang.org/x/sys v0.30.0 // indirect
)
