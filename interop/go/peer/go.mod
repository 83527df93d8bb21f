module github.com/spiffe-mtls/interop/peer

go 1.26

require github.com/spiffe/go-spiffe/v2 v2.9.0 // indirect
