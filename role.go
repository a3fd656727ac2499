package saasapi

// Role is a member's role within one organisation.
type Role string

// The roles, from most to least privileged.
const (
	RoleOwner  Role = "owner"
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
	RoleViewer Role = "viewer"
)

// ParseRole returns the role named s, or false.
func ParseRole(s string) (Role, bool) {
	switch r := Role(s); r {
	case RoleOwner, RoleAdmin, RoleMember, RoleViewer:
		return r, true
	}
	return "", false
}

// Permission is one thing a principal may do within an organisation.
type Permission string

// The permissions of the contract's role table.
const (
	PermReadOrganisation   Permission = "organisation:read"
	PermUpdateOrganisation Permission = "organisation:update"
	PermManageMembers      Permission = "members:manage"
	PermManageAPIKeys      Permission = "api_keys:manage"
	PermReadProjects       Permission = "projects:read"
	PermWriteProjects      Permission = "projects:write"
	PermReadAudit          Permission = "audit:read"
	// PermLeaveOrganisation is removing one's own membership: every member
	// may leave (the last owner excepted, which the member commands decide).
	PermLeaveOrganisation Permission = "organisation:leave"
)

// permissions is the role table: the single place that says who may do what.
// Admins may manage members, but the owner-specific limits (an admin cannot
// grant, change or remove an owner) are decided by the member commands.
var permissions = map[Role]map[Permission]bool{
	RoleOwner: {
		PermReadOrganisation: true, PermUpdateOrganisation: true, PermManageMembers: true,
		PermManageAPIKeys: true, PermReadProjects: true, PermWriteProjects: true, PermReadAudit: true,
		PermLeaveOrganisation: true,
	},
	RoleAdmin: {
		PermReadOrganisation: true, PermUpdateOrganisation: true, PermManageMembers: true,
		PermManageAPIKeys: true, PermReadProjects: true, PermWriteProjects: true, PermReadAudit: true,
		PermLeaveOrganisation: true,
	},
	RoleMember: {PermReadOrganisation: true, PermReadProjects: true, PermWriteProjects: true, PermLeaveOrganisation: true},
	RoleViewer: {PermReadOrganisation: true, PermReadProjects: true, PermLeaveOrganisation: true},
}

// apiKeyPermissions is what an active API key may do in its own organisation.
var apiKeyPermissions = map[Permission]bool{PermReadProjects: true, PermWriteProjects: true}

// Can reports whether role grants perm.
func (r Role) Can(perm Permission) bool { return permissions[r][perm] }

// RolesWith returns the roles that grant perm, in the table's order, for
// statements that check a membership in SQL.
func RolesWith(perm Permission) []Role {
	var out []Role
	for _, r := range []Role{RoleOwner, RoleAdmin, RoleMember, RoleViewer} {
		if r.Can(perm) {
			out = append(out, r)
		}
	}
	return out
}

// APIKeyMay reports whether an active API key holds perm in its own
// organisation.
func APIKeyMay(perm Permission) bool { return apiKeyPermissions[perm] }
