// Package auth verifies the signed tokens (JWTs) that clients of one
// integration present, and finds a client's address behind trusted
// proxies. It knows no configuration file, no WebSocket library and no
// Lua: the host fills Options, calls the Verifier around its upgrade, and
// hands the claims to the script as channel.claims.
//
// # Keys
//
// An HMAC secret (given as bytes; the caller reads it from the environment
// or a file, never from the configuration text), PEM public keys (RSA of
// at least 2048 bits, ECDSA P-256/384/521, Ed25519), and/or a JWKS URL.
// The JWKS is fetched by New, refreshed every JWKSRefreshInterval, and
// fetched again, at most once per JWKSUnknownKIDInterval, when a token
// names a kid it does not hold; other unknown kids are refused at once. A
// failed fetch keeps the keys held, so tokens keep verifying while the
// JWKS endpoint is down. Keys named by the token itself (jwk, jku, x5u,
// x5c headers) are never used. Parsing and signature checks are
// github.com/golang-jwt/jwt/v5; JWKS handling is
// github.com/MicahParks/keyfunc/v3.
//
// # Checks, in order
//
// Each step's failure is an *Error whose Reason and Message can be shown
// to the client; they never include a key, a secret, a kid or a URL (the
// wrapped cause, for the log, may name the kid and the URL).
//
//  1. Presence: the handshake sources Options enable, in the order
//     Authorization: Bearer, Sec-WebSocket-Protocol "es.token.<token>",
//     query parameter, cookie; else the first message's MessageField.
//     Reason missing (its message says where the token is expected).
//  2. Size: over MaxTokenBytes (default 8 KiB), before any decoding:
//     too_large.
//  3. Form: three base64url parts, JSON header and claims: malformed. A
//     header with "crit", or a kid that is not a string: malformed.
//  4. Algorithm: "alg" in the allow-list (never "none"; by default what the
//     keys can verify): algorithm_not_allowed.
//  5. Key: an HS* token is tried with the HMAC secret only; any other with
//     public keys of its own family only (so an RS256 token re-signed as
//     HS256 with the public key fails): the static key its kid names, else
//     the JWKS key its kid names, else every key that fits its alg. None:
//     unknown_key.
//  6. Signature: bad_signature.
//  7. Claims, only once the signature verified, one reason told in this
//     order: a time claim that is not a number (malformed); exp absent
//     (unless AllowNoExpiry), or iss/aud absent when required
//     (missing_claim); exp past (expired); nbf or iat in the future
//     (not_yet_valid); iss not Issuer (wrong_issuer); aud naming none of
//     Audience (wrong_audience). exp, nbf and iat allow Leeway.
//
// # What the host does with it
//
// Before the upgrade, FromRequest: on success upgrade (selecting the "es"
// subprotocol with AcceptSubprotocol when the client offered it) and keep
// the Claims; on ErrMissing with ReadsFirstMessage, upgrade and call
// FromMessage on the first message before initial_authorisation runs;
// otherwise answer 401 with {"id":"error","error":"unauthenticated",
// "reason":<Reason>,"message":<Message>} and upgrade nothing. A refusal of
// the first message is that frame, then close 1008. A connection whose
// token was refused never reaches the script. Claims.JSON becomes
// channel.claims (read-only); at CloseAt the connection is closed 1008
// with reason token_expired, unless KeepAfterExpiry.
//
// # Client addresses
//
// TrustedProxies.ClientAddr gives the address for channel.remote_addr and
// the per-address connection limit: the peer, unless the peer is a trusted
// proxy; then the X-Forwarded-For (or, if so configured, Forwarded) chain
// walked from the right past trusted proxies. A client that is not behind
// a trusted proxy cannot choose its address by sending these headers.
package auth
