// Package auth provides the credential primitives of the service: Argon2id
// password hashing with bounded concurrency, JWT access-token issue and
// verification, and API key minting, parsing and hashing.
//
// # Passwords
//
// [Hasher] stores passwords as PHC strings
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
//
// with salt and key in unpadded standard base64, the reference PHC encoding.
// Argon2id is deliberately expensive in memory, so a Hasher lets only a fixed
// number of hashes run at once: a login flood queues (and gives up when the
// request context is cancelled) instead of exhausting the heap.
//
// # Access tokens
//
// [TokenIssuer] issues HS256 JWTs carrying sub (the user ID), iss, iat, exp
// and token_type "access", and verifies them against an allow-list of exactly
// one algorithm, so alg=none and algorithm-confusion tokens are rejected.
//
// # API keys
//
// A raw API key looks like
//
//	sapi_<43 base62 chars: 32 random bytes>_<6 base62 chars: CRC32>
//
// for example sapi_0Yb3...Qz_1a2B3c (55 characters in all). The distinctive
// "sapi_" prefix lets secret scanners and the HTTP layer recognise keys, and
// the CRC32 checksum of the random part lets a mistyped or truncated key be
// rejected without a database round trip. Only the SHA-256 of the raw key is
// stored, together with a short non-secret display prefix.
//
// The package is a leaf: it depends only on the standard library, the root
// saasapi package, golang-jwt and golang.org/x/crypto.
package auth
