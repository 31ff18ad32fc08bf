// Package roundtrip holds end-to-end tests only: a fixture disk is backed
// up through the real engine into a repository on each network backend,
// served by a real server on loopback, restored onto an empty disk and
// compared file by file; a server killed in the middle of a backup must
// leave a repository the next backup resumes from.
package roundtrip
