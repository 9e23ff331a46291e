// Package internal holds what lastmile shares between its binaries but
// does not offer to other modules: storage engines, test harnesses for real
// daemons, and repository-wide checks.
package internal
