package saasapi

// PrincipalType says who is calling.
type PrincipalType string

// Principal types. Anonymous callers appear as actors of registration and of
// failed logins only.
const (
	PrincipalUser      PrincipalType = "user"
	PrincipalAPIKey    PrincipalType = "api_key"
	PrincipalAnonymous PrincipalType = "anonymous"
	PrincipalSystem    PrincipalType = "system"
)

// Principal is an authenticated caller: a user (from an access token) or an
// API key, which belongs to exactly one organisation.
type Principal struct {
	Type           PrincipalType
	UserID         ID // for users
	APIKeyID       ID // for API keys
	OrganisationID ID // for API keys: the organisation the key belongs to
}

// ID returns the user or API key ID of the principal.
func (p Principal) ID() ID {
	if p.Type == PrincipalAPIKey {
		return p.APIKeyID
	}
	return p.UserID
}

// UserPrincipal returns the principal of a signed-in user.
func UserPrincipal(userID ID) Principal { return Principal{Type: PrincipalUser, UserID: userID} }

// APIKeyPrincipal returns the principal of an active API key.
func APIKeyPrincipal(keyID, organisationID ID) Principal {
	return Principal{Type: PrincipalAPIKey, APIKeyID: keyID, OrganisationID: organisationID}
}

// Access is the outcome of an organisation access check: who is acting, in
// which organisation, with which role. Only Authorize creates one with
// Granted set, so code that holds a granted Access has been authorized.
type Access struct {
	Principal      Principal
	OrganisationID ID
	Role           Role // empty for API keys
	granted        bool
}

// OperatorAccess is the access of an operator's command on an organisation
// (an erasure that ends a person's memberships), which no role gate
// decides: the operator acts on the database's behalf.
func OperatorAccess(p Principal, orgID ID) Access {
	return Access{Principal: p, OrganisationID: orgID, Role: RoleOwner, granted: true}
}

// Granted reports whether the access was produced by a successful Authorize.
func (a Access) Granted() bool { return a.granted }

// Authorize applies the contract's access order for an existing organisation:
// the caller must belong to it (403 organisation access denied), then hold
// perm (403 insufficient permissions). role is the user's membership role in
// the organisation, empty when the user is not a member.
func Authorize(p Principal, organisationID ID, role Role, perm Permission) (Access, error) {
	switch p.Type {
	case PrincipalAPIKey:
		if p.OrganisationID != organisationID {
			return Access{}, Errorf(EFORBIDDEN, MsgOrgAccessDenied)
		}
		if !apiKeyPermissions[perm] {
			return Access{}, Errorf(EFORBIDDEN, MsgInsufficientPerms)
		}
	case PrincipalUser:
		if role == "" {
			return Access{}, Errorf(EFORBIDDEN, MsgOrgAccessDenied)
		}
		if !role.Can(perm) {
			return Access{}, Errorf(EFORBIDDEN, MsgInsufficientPerms)
		}
	default:
		return Access{}, Errorf(EUNAUTHENTICATED, MsgAuthRequired)
	}
	return Access{Principal: p, OrganisationID: organisationID, Role: role, granted: true}, nil
}
