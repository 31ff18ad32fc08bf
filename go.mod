module github.com/lifeboat/lifeboat

go 1.26.8

require (
	github.com/klauspost/compress v1.18.5
	github.com/zeebo/blake3 v0.2.4
	golang.org/x/crypto v0.59.0
	golang.org/x/sync v0.25.0
	golang.org/x/sys v0.50.0
	golang.org/x/term v0.48.0
)

require github.com/klauspost/cpuid/v2 v2.0.12 // indirect
