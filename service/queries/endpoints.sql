SELECT method, path FROM count.methods
