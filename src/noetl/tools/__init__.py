"""noetl.tools"""
