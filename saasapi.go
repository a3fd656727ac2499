// Package saasapi holds the domain language of the multi-tenant SaaS API:
// identifiers, roles and the permission table, principals, the event
// catalogue and the domain error type. Every other package talks to the others
// through these types; this package depends on nothing but the standard
// library, ULID generation and Unicode normalisation.
package saasapi
