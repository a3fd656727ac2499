package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/projections"
)

// TestBulkEqualsInline runs random sequences of commands (which write the
// read tables inline, event by event) and checks that the rebuild's bulk
// path produces exactly the same tables, and that Verify agrees, for
// several seeds. Commands may be refused (a project already deleted, the
// last owner leaving): a refusal writes nothing, which the replay must
// also show.
func TestBulkEqualsInline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for seed := range uint64(3) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			r := rand.New(rand.NewPCG(seed, 42))
			users := []saasapi.ID{w.owner}
			projects := append([]saasapi.ID(nil), w.projects...)
			statuses := []string{"active", "archived"}
			roles := []saasapi.Role{saasapi.RoleAdmin, saasapi.RoleMember, saasapi.RoleViewer}
			for i := range 60 {
				switch r.IntN(6) {
				case 0:
					u, err := w.svc.Register(ctx, commands.Meta{RequestID: "req"}, commands.RegisterInput{
						Email: fmt.Sprintf("u%d-%d@example.com", seed, i), Password: "correct horse battery", DisplayName: "u"})
					if err != nil {
						t.Fatal(err)
					}
					users = append(users, u.ID)
					_, _ = w.svc.AddMember(ctx, w.as(w.owner), w.org,
						commands.AddMemberInput{UserID: u.ID, Role: roles[r.IntN(len(roles))]})
				case 1:
					projects = append(projects, w.createProject(t, w.owner, fmt.Sprintf("p%d", i)))
				case 2:
					s := statuses[r.IntN(2)]
					name := fmt.Sprintf("renamed %d", i)
					_, _ = w.svc.UpdateProject(ctx, w.as(w.owner), w.org, projects[r.IntN(len(projects))],
						commands.UpdateProjectInput{Status: &s, Name: &name})
				case 3:
					_ = w.svc.DeleteProject(ctx, w.as(w.owner), w.org, projects[r.IntN(len(projects))])
				case 4:
					_, _ = w.svc.ChangeMemberRole(ctx, w.as(w.owner), w.org, users[r.IntN(len(users))], roles[r.IntN(len(roles))])
				case 5:
					if u := users[r.IntN(len(users))]; u != w.owner {
						_ = w.svc.RemoveMember(ctx, w.as(w.owner), w.org, u)
					}
				}
			}
			w.svc.Wait()
			inline := dump(t, w.db.Pool)
			if _, diffs, err := projections.Verify(ctx, w.db.Pool, readEvents); err != nil || len(diffs) != 0 {
				t.Fatalf("Verify after random commands: %v, %v", diffs, err)
			}
			if _, err := projections.Rebuild(ctx, w.db.Pool, readEvents, nil); err != nil {
				t.Fatal(err)
			}
			if bulk := dump(t, w.db.Pool); !sameDump(inline, bulk) {
				t.Fatalf("the rebuilt tables differ from the ones the commands wrote:\ninline %v\nbulk   %v", inline, bulk)
			}
		})
	}
}
