// Package testdisk builds realistic fixture disks with the real tools
// (sgdisk, sfdisk, mkfs.*, mtools, ntfs-3g, exfat-fuse), reads their file
// systems back, and compares file trees. It is imported by other packages'
// tests; nothing in the shipped binary links it.
//
// Partitions are built as separate image files and then copied into the disk
// image at their offsets, so ext2/3/4 (mkfs.ext4 -d) and FAT (mtools) need
// neither root nor loop devices. NTFS and exFAT can only be filled through
// FUSE mounts, so a fixture with files on such a partition needs root.
//
// Reading back works on a private copy of the partition bytes, never on the
// image itself: ext2/3/4 through debugfs rdump (hard links are restored from
// the inode numbers debugfs lists), FAT through mcopy, NTFS and exFAT through
// read-only FUSE mounts.
package testdisk
