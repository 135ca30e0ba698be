package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
)

// family is the kind of key an algorithm verifies with. A key is only ever
// handed to an algorithm of its own family: this is what makes the
// "RS256 token re-signed as HS256 with the public key" attack fail.
type family int

const (
	famHMAC family = iota + 1
	famRSA
	famECDSA
	famEd25519
)

// algorithms maps every algorithm the Verifier accepts to its family. "none"
// and anything else jwt/v5 knows is absent on purpose.
var algorithms = map[string]family{
	"HS256": famHMAC, "HS384": famHMAC, "HS512": famHMAC,
	"RS256": famRSA, "RS384": famRSA, "RS512": famRSA,
	"PS256": famRSA, "PS384": famRSA, "PS512": famRSA,
	"ES256": famECDSA, "ES384": famECDSA, "ES512": famECDSA,
	"EdDSA": famEd25519,
}

// hmacMinBytes is the shortest secret each HS algorithm accepts (RFC 7518
// section 3.2: at least the size of the hash).
var hmacMinBytes = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// curveAlg is the one ES algorithm each curve signs with (RFC 7518 3.4).
var curveAlg = map[elliptic.Curve]string{
	elliptic.P256(): "ES256", elliptic.P384(): "ES384", elliptic.P521(): "ES512",
}

// staticKey is one key of Options.PublicKeys, parsed.
type staticKey struct {
	id  string
	fam family
	alg string // for ECDSA, the one algorithm of its curve; else ""
	key crypto.PublicKey
}

// keySet is the configured (not fetched) keys.
type keySet struct {
	secret []byte
	static []staticKey
	byID   map[string]*staticKey
}

func newKeySet(o Options) (*keySet, error) {
	ks := &keySet{byID: make(map[string]*staticKey)}
	if len(o.HMACSecret) > 0 {
		if len(o.HMACSecret) < hmacMinBytes["HS256"] {
			return nil, optErr("HMACSecret", "%d bytes is shorter than the 32 HS256 needs (RFC 7518 3.2)", len(o.HMACSecret))
		}
		ks.secret = slices.Clone(o.HMACSecret)
	}
	for i, pk := range o.PublicKeys {
		k, err := parsePublicKey(pk.PEM)
		if err != nil {
			return nil, optErrAt("PublicKeys", i, "%v", err)
		}
		k.id = pk.ID
		ks.static = append(ks.static, k)
	}
	for i := range ks.static {
		k := &ks.static[i]
		if k.id == "" {
			continue
		}
		if ks.byID[k.id] != nil {
			return nil, optErrAt("PublicKeys", i, "ID %q is given twice", k.id)
		}
		ks.byID[k.id] = k
	}
	return ks, nil
}

// parsePublicKey reads one PEM block holding a public key or a certificate.
func parsePublicKey(data []byte) (staticKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return staticKey{}, fmt.Errorf("no PEM block found")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return staticKey{}, fmt.Errorf("more than one PEM block: give one key per entry")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE") {
			return staticKey{}, fmt.Errorf("this is a private key (%s): give the public key only", block.Type)
		}
		return staticKey{}, fmt.Errorf("PEM block %q is not a public key", block.Type)
	}
	if err != nil {
		return staticKey{}, fmt.Errorf("cannot parse the %s: %v", block.Type, err)
	}
	return fromPublic(pub)
}

// fromPublic checks a public key (parsed from PEM or fetched in a JWKS).
func fromPublic(pub any) (staticKey, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return staticKey{}, fmt.Errorf("RSA key of %d bits is under the 2048 required", k.N.BitLen())
		}
		return staticKey{fam: famRSA, key: k}, nil
	case *ecdsa.PublicKey:
		alg, ok := curveAlg[k.Curve]
		if !ok {
			return staticKey{}, fmt.Errorf("ECDSA curve %s is not P-256, P-384 or P-521", k.Curve.Params().Name)
		}
		return staticKey{fam: famECDSA, alg: alg, key: k}, nil
	case ed25519.PublicKey:
		return staticKey{fam: famEd25519, key: k}, nil
	}
	return staticKey{}, fmt.Errorf("key of type %T is not RSA, ECDSA or Ed25519", pub)
}

// fits reports whether k can verify a token of alg.
func (k *staticKey) fits(alg string) bool {
	return algorithms[alg] == k.fam && (k.alg == "" || k.alg == alg)
}

// allowedAlgorithms checks Options.Algorithms against the keys, or, when it
// is empty, lists every algorithm they can verify.
func allowedAlgorithms(o Options, ks *keySet) ([]string, error) {
	canVerify := func(alg string) bool {
		fam := algorithms[alg]
		if fam == famHMAC {
			return len(ks.secret) >= hmacMinBytes[alg]
		}
		if o.JWKSURL != "" {
			return true
		}
		for i := range ks.static {
			if ks.static[i].fits(alg) {
				return true
			}
		}
		return false
	}
	if len(o.Algorithms) == 0 {
		var all []string
		for alg := range algorithms {
			if canVerify(alg) {
				all = append(all, alg)
			}
		}
		slices.Sort(all)
		return all, nil
	}
	seen := make(map[string]bool)
	for i, alg := range o.Algorithms {
		fam, ok := algorithms[alg]
		switch {
		case strings.EqualFold(alg, "none"):
			return nil, optErrAt("Algorithms", i, `"none" is never allowed: it means an unsigned token`)
		case !ok:
			return nil, optErrAt("Algorithms", i, "%q is not one of HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512, EdDSA", alg)
		case seen[alg]:
			return nil, optErrAt("Algorithms", i, "%q is given twice", alg)
		case fam == famHMAC && len(ks.secret) == 0:
			return nil, optErrAt("Algorithms", i, "%s needs HMACSecret (a public key is never used as an HMAC secret)", alg)
		case !canVerify(alg) && fam == famHMAC:
			return nil, optErrAt("Algorithms", i, "%s needs a secret of at least %d bytes; HMACSecret has %d", alg, hmacMinBytes[alg], len(ks.secret))
		case !canVerify(alg):
			return nil, optErrAt("Algorithms", i, "%s needs a public key of its kind in PublicKeys or a JWKSURL", alg)
		}
		seen[alg] = true
	}
	return slices.Clone(o.Algorithms), nil
}
