// Package migrations holds the numbered SQL files of the schema, embedded
// into the binary and applied with goose by `shop migrate`.
package migrations

import "embed"

// FS holds the migration files, named NNNNN_description.sql.
//
//go:embed *.sql
var FS embed.FS
