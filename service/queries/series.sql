SELECT method, path, tenant, status_code FROM count.methods
