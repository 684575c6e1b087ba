"""The HTML report's inline style, its controls, its legend and its script: constant text, nothing from a run.

The script only adds: it shows the filter controls (hidden for a reader without scripts), filters the case rows by
text and verdict, sorts a table by a clicked column (by each cell's ``data-sort``), and marks the page ready
(``data-ready``: milliseconds from navigation to the end of the script).
"""

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1600px}
h1{margin:0 0 .2em}h2{margin:1.2em 0 .4em;font-size:1.15em}
.written{color:#666;margin:0}.early{background:#fff3e0;border-left:4px solid #b26a00;padding:.4em .6em}
.machine{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;margin:.6em 0}
.machine dt{color:#666}.machine dd{margin:0}
.chip{display:inline-block;padding:0 .4em;border-radius:3px;color:#fff;font-weight:600;font-size:.85em}
.v-PASS{background:#2e7d32;fill:#2e7d32;stroke:#2e7d32}
.v-REGRESSED{background:#c62828;fill:#c62828;stroke:#c62828}
.v-FAILED{background:#7f0000;fill:#7f0000;stroke:#7f0000}
.v-IMPROVED{background:#1565c0;fill:#1565c0;stroke:#1565c0}
.v-INCONCLUSIVE{background:#b26a00;fill:#b26a00;stroke:#b26a00}
.v-SKIPPED{background:#757575}
#attention ul{padding-left:1.2em}#attention pre{background:#f6f6f6;padding:.4em;overflow:auto;max-height:20em}
table{border-collapse:collapse;width:100%}
th{text-align:left;border-bottom:2px solid #ccc;padding:.3em;white-space:nowrap;font-size:.9em}
td{border-bottom:1px solid #eee;padding:.3em;vertical-align:top;font-size:.9em}
th[data-col]{cursor:pointer}td b{white-space:nowrap}.why{color:#555;font-size:.88em;max-width:42em}
figure{margin:.5em 0 1em}figcaption{color:#555;font-size:.9em;max-width:680px}
svg text{font-size:11px;fill:#444}
.grid{stroke:#eee}.frame{fill:none;stroke:#bbb}.roof{fill:none;stroke:#444;stroke-width:1.5}
.roof-label{font-size:10px}.pair line{stroke:#999}circle.base{fill:#fff;stroke-width:1.5}.legend{stroke:#444}
.band{fill:#dcedc8}.exp{stroke:#33691e;stroke-width:1.5}.floor{stroke:#c62828;stroke-dasharray:3 2}
.ci{stroke-width:2.5}
.spark polyline{fill:none;stroke:#888}.spark circle{fill:#888}.spark circle.now{fill:#fff;stroke-width:1.5}
#controls{margin:1em 0}#controls input{width:20em}
@media print{
 #controls{display:none}body{margin:0;font-size:10px;max-width:none}
 tr,figure{break-inside:avoid}.chart{max-width:100%;height:auto}
 .chip{color:#000;border:1px solid #000;background:none}a{color:inherit}
}
"""

CONTROLS = """<div id="controls" hidden><label>filter <input id="q" type="search" placeholder="case id"></label>
<label>verdict <select id="vf"><option value="">any</option><option>FAILED</option><option>REGRESSED</option>
<option>INCONCLUSIVE</option><option>IMPROVED</option><option>PASS</option></select></label>
<small>click a column's head to sort</small></div>"""

LEGEND = """<footer><h2>Reading the charts</h2><p><b>Against the band</b>: the speedup (dot) with its confidence
interval (bar, coloured by verdict) on a log scale, over the band the gate allows (shaded; open to the right when
only the <code>min_speedup</code> floor gates it), the recorded speedup (tick) and the floor (dashed red).
<b>Recordings</b>: the speedups of the expectation entry's pooled recordings, oldest first; the open dot is this run
where it is not already the last recording. Hover a point for its numbers.</p></footer>"""

SCRIPT = """(function(){
var q=document.getElementById('q'),vf=document.getElementById('vf');
document.getElementById('controls').hidden=false;
function filter(){var t=q.value.toLowerCase(),want=vf.value;
document.querySelectorAll('tbody tr').forEach(function(r){
r.hidden=!((!t||r.dataset.case.toLowerCase().indexOf(t)>=0)&&(!want||r.dataset.verdict===want));});}
q.addEventListener('input',filter);vf.addEventListener('change',filter);
function key(row,i,num){var v=row.cells[i].dataset.sort;if(v===undefined)v=row.cells[i].textContent;
if(!num)return v;var f=parseFloat(v);return isNaN(f)?-Infinity:f;}
document.querySelectorAll('th[data-col]').forEach(function(th){th.addEventListener('click',function(){
var body=th.closest('table').tBodies[0],i=+th.dataset.col,num=th.dataset.num==='1';
var dir=th.dataset.dir==='asc'?-1:1;th.dataset.dir=dir>0?'asc':'desc';
Array.from(body.rows).sort(function(a,b){var x=key(a,i,num),y=key(b,i,num);
return dir*(num?(x<y?-1:x>y?1:0):String(x).localeCompare(String(y)));}).forEach(function(r){body.appendChild(r);});
});});
document.documentElement.dataset.ready=Math.round(performance.now());
})();"""
