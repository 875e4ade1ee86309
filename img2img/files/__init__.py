"""Files: decoding and writing images, walking folders, atomic writes, the cache folder, HTTP transfer."""
