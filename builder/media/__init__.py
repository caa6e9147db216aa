"""The media a build writes: where each file goes, the plans (pure), the media table, the
2003 CD slipstream, and the FAT and ISO 9660 writers."""
