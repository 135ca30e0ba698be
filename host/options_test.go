package host

import (
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// [server] tls_cert and tls_key load into the transport's TLS options; a
// bad key pair stops the server at start, naming the keys.
func TestTLSOptions(t *testing.T) {
	certFile, keyFile, _ := testkit.WriteCert(t)
	cfg := config.Default()
	cfg.Server.TLSCert, cfg.Server.TLSKey = certFile, keyFile
	opts, err := wsOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLS == nil || len(opts.TLS.Certificates) != 1 {
		t.Fatalf("TLS options %+v, want the one certificate", opts.TLS)
	}

	// A bad key pair stops the server at start.
	cfg.Server.TLSKey = certFile
	if _, err := wsOptions(cfg); err == nil || !strings.Contains(err.Error(), "tls_cert") {
		t.Errorf("a bad key pair: %v, want an error naming server.tls_cert", err)
	}
}
